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

fn text_cell(data: &[u8], row_start: usize) -> String {
    (row_start..row_start + ROW)
        .map(|i| match data.get(i) {
            Some(&b) if b.is_ascii_graphic() || b == b' ' => b as char,
            Some(_) => '.',
            None => ' ',
        })
        .collect()
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
