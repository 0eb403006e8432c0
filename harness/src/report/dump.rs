//! Side-by-side hex and text dumps of expected versus actual bytes, with the first
//! differing offset marked: the view a protocol author needs to see a framing bug.

use std::fmt::Write as _;

/// Bytes per dump row; 8 keeps two columns within 80-odd characters.
const ROW: usize = 8;
/// Rows shown before and after the first difference when the data is long.
const CONTEXT_BEFORE: usize = 4;
const CONTEXT_AFTER: usize = 8;

/// Offset of the first byte that differs, or of the end of the shorter one.
pub fn first_difference(expected: &[u8], actual: &[u8]) -> Option<usize> {
    let common = expected.len().min(actual.len());
    (0..common)
        .find(|&i| expected[i] != actual[i])
        .or_else(|| (expected.len() != actual.len()).then_some(common))
}

fn describe_byte(data: &[u8], offset: usize) -> String {
    match data.get(offset) {
        Some(&b) if b.is_ascii_graphic() || b == b' ' => format!("0x{b:02x} '{}'", b as char),
        Some(&b) => format!("0x{b:02x}"),
        None => "end of data".into(),
    }
}

/// One row's bytes as hex pairs, each followed by a space; missing bytes as blanks.
fn hex_cell(data: &[u8], row_start: usize) -> String {
    let row = data.get(row_start..).unwrap_or_default();
    let digits = hex::encode(&row[..row.len().min(ROW)]);
    let mut cell = String::with_capacity(ROW * 3);
    for i in 0..ROW {
        match digits.get(2 * i..2 * i + 2) {
            Some(pair) => {
                cell.push_str(pair);
                cell.push(' ');
            }
            None => cell.push_str("   "),
        }
    }
    cell
}

/// The text column of one row: printable ASCII as itself, valid UTF-8 as its
/// characters (a Chinese chat message reads as Chinese), everything else as `.`.
/// Each row is exactly `ROW` columns wide whatever it holds, so the columns after
/// it stay aligned: a multi-byte character is narrower than its bytes, so the row
/// is padded at its end; one whose bytes straddle two rows is shown in the row
/// where its width fits within its bytes.
fn text_cell(data: &[u8], row_start: usize) -> String {
    let row_end = row_start + ROW;
    let mut cell = String::with_capacity(ROW * 3);
    let mut columns = 0;
    // A character that started in the previous row may own this row's first bytes:
    // back up to its first byte (at most 3 continuation bytes).
    let mut at = row_start;
    while at > row_start.saturating_sub(3) && at > 0 && at < data.len() && is_continuation(data[at])
    {
        at -= 1;
    }
    if at < row_start && !starts_char(data, at) {
        at = row_start;
    }
    while at < row_end {
        let Some(&byte) = data.get(at) else {
            break;
        };
        let (shown, len) = display_unit(&data[at..]);
        match shown {
            Some((c, width)) => {
                // Bytes of the character in the row where it starts.
                let in_first_row = if at < row_start {
                    row_start - at
                } else {
                    len.min(row_end - at)
                };
                // The row that shows the character: its own if it fits there.
                let shown_here = if width <= in_first_row {
                    at >= row_start
                } else {
                    at < row_start
                };
                if shown_here {
                    cell.push(c);
                    columns += width;
                }
            }
            None => {
                cell.push(if byte.is_ascii_graphic() || byte == b' ' {
                    byte as char
                } else {
                    '.'
                });
                columns += 1;
            }
        }
        at += len;
    }
    cell.extend(std::iter::repeat_n(' ', ROW - columns.min(ROW)));
    cell
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xc0 == 0x80
}

/// Whether a printable multi-byte character starts at `at`.
fn starts_char(data: &[u8], at: usize) -> bool {
    matches!(display_unit(&data[at..]), (Some(_), _))
}

/// The display unit at the start of `bytes`: a printable non-ASCII character with
/// its display width and length in bytes, or `None` and length 1 for a byte shown
/// on its own (ASCII, invalid UTF-8, control or zero-width characters).
fn display_unit(bytes: &[u8]) -> (Option<(char, usize)>, usize) {
    let first = bytes[0];
    if first < 0x80 {
        return (None, 1);
    }
    let len = match first {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return (None, 1),
    };
    let Some(c) = bytes
        .get(..len)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.chars().next())
    else {
        return (None, 1);
    };
    match unicode_width::UnicodeWidthChar::width(c) {
        Some(width @ 1..=2) if width <= len && !c.is_control() => (Some((c, width)), len),
        _ => (None, 1),
    }
}

/// Renders both byte strings row by row, the row of the first difference marked
/// with `>` and a caret under the differing byte on both sides.
pub fn side_by_side(expected: &[u8], actual: &[u8]) -> String {
    let mut out = String::new();
    let diff = first_difference(expected, actual);
    match diff {
        Some(offset) => {
            let _ = writeln!(
                out,
                "first difference at offset {offset} (0x{offset:x}): expected {}, got {}",
                describe_byte(expected, offset),
                describe_byte(actual, offset)
            );
        }
        None => {
            let _ = writeln!(out, "the bytes are identical");
        }
    }
    let left_title = format!("expected ({} bytes)", expected.len());
    let right_title = format!("actual ({} bytes)", actual.len());
    let _ = writeln!(out, "        {left_title:<35}| {right_title}");
    let total_rows = expected.len().max(actual.len()).div_ceil(ROW).max(1);
    let diff_row = diff.map(|o| o / ROW);
    let (first, last) = match diff_row {
        Some(row) if total_rows > CONTEXT_BEFORE + CONTEXT_AFTER + 1 => (
            row.saturating_sub(CONTEXT_BEFORE),
            (row + CONTEXT_AFTER).min(total_rows - 1),
        ),
        _ => (0, total_rows.min(CONTEXT_BEFORE + CONTEXT_AFTER + 1) - 1),
    };
    if first > 0 {
        let _ = writeln!(out, "  ...   ({} earlier bytes are equal)", first * ROW);
    }
    for row in first..=last {
        let start = row * ROW;
        let mark = if Some(row) == diff_row { '>' } else { ' ' };
        let _ = writeln!(
            out,
            "{mark}{start:06x} {}{}  | {}{}",
            hex_cell(expected, start),
            text_cell(expected, start),
            hex_cell(actual, start),
            text_cell(actual, start),
        );
        if Some(row) == diff_row {
            let column = diff.unwrap_or(0) - start;
            let hex_pad = " ".repeat(8 + column * 3);
            // The right hex column starts 36 characters after the left one (hex, text,
            // separator), so the carets are always 34 spaces apart.
            let right_pad = " ".repeat(ROW * 3 + ROW + 4 - 2);
            let _ = writeln!(out, "{hex_pad}^^{right_pad}^^");
        }
    }
    if last + 1 < total_rows {
        let _ = writeln!(
            out,
            "  ...   ({} more bytes)",
            (total_rows - last - 1) * ROW
        );
    }
    out
}

/// A plain dump of one byte string, for failures with nothing to compare against.
/// Long data shows its first and last rows.
pub fn single(title: &str, data: &[u8]) -> String {
    let mut out = format!("{title} ({} bytes)\n", data.len());
    let rows = data.len().div_ceil(ROW);
    let limit = CONTEXT_BEFORE + CONTEXT_AFTER;
    for row in 0..rows {
        if rows > limit && row == limit / 2 {
            let _ = writeln!(out, "  ...   ({} bytes not shown)", (rows - limit) * ROW);
        }
        if rows > limit && row >= limit / 2 && row < rows - limit / 2 {
            continue;
        }
        let start = row * ROW;
        let _ = writeln!(
            out,
            " {start:06x} {}{}",
            hex_cell(data, start),
            text_cell(data, start)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_differing_offset() {
        assert_eq!(first_difference(b"hello", b"help!"), Some(3));
        assert_eq!(first_difference(b"hello", b"hell"), Some(4));
        assert_eq!(first_difference(b"same", b"same"), None);
    }

    #[test]
    fn marks_the_row_and_byte_of_the_first_difference() {
        let dump = side_by_side(b"helloeggo2", b"hello");
        assert!(
            dump.contains("offset 5 (0x5): expected 0x65 'e', got end of data"),
            "{dump}"
        );
        let marked: Vec<&str> = dump.lines().filter(|l| l.starts_with('>')).collect();
        assert_eq!(marked.len(), 1, "{dump}");
        assert!(
            marked[0].contains("68 65 6c 6c 6f 65 67 67 helloegg"),
            "{dump}"
        );
        let caret_line = dump.lines().find(|l| l.contains("^^")).unwrap();
        // The caret sits under byte 5 of the expected hex column.
        assert_eq!(caret_line.find("^^"), Some(8 + 5 * 3), "{dump}");
    }

    #[test]
    fn utf8_text_shows_as_text_and_keeps_the_columns_aligned() {
        use unicode_width::UnicodeWidthStr;
        let message = "hi 你好, wörld 🎉!\n\u{7}".as_bytes();
        let rows: Vec<String> = (0..message.len().div_ceil(ROW))
            .map(|row| text_cell(message, row * ROW))
            .collect();
        for row in &rows {
            assert_eq!(row.width(), ROW, "{rows:?}");
        }
        let joined: String = rows.concat();
        for word in ["你", "好", "ö", "🎉"] {
            assert!(joined.contains(word), "{word} in {rows:?}");
        }
        // Every start offset of a row, including one inside a character.
        for start in 0..message.len() {
            assert_eq!(text_cell(message, start).width(), ROW, "at {start}");
        }
        assert_eq!(text_cell(b"\xff\xfe a", 0), ".. a    ");
        let dump = single("received", "聊天消息：你好".as_bytes());
        assert!(dump.contains("聊天"), "{dump}");
    }

    #[test]
    fn long_data_shows_a_window_around_the_difference() {
        let expected = vec![b'a'; 4096];
        let mut actual = expected.clone();
        actual[3000] = b'b';
        let dump = side_by_side(&expected, &actual);
        assert!(dump.contains("offset 3000"));
        assert!(dump.contains("earlier bytes are equal"));
        assert!(dump.lines().count() < 20, "{dump}");
    }
}
