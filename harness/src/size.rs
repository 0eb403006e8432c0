//! Sizes in bytes as scenario files write them (`max_memory = "600MiB"`): an
//! integer is a number of bytes; a string is a number and a unit.
//!
//! Binary units (`KiB`, `MiB`, `GiB`, `TiB`: powers of 1024) and decimal ones (`kB`,
//! `MB`, `GB`, `TB`: powers of 1000) are both accepted, in any letter case, because
//! people write both and mean what they wrote. A bare `K`, `M` or `G` is refused:
//! tools disagree on whether it means 1000 or 1024, and a memory limit that is 5%
//! off is a test that passes or fails for the wrong reason.

/// Units after the number, in bytes, compared without regard to case.
const UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
];

/// The largest size accepted: 1 PiB, far beyond any machine's memory, so that a
/// typo of a few extra digits is caught rather than overflowing.
pub const MAX_SIZE: u64 = 1 << 50;

/// What a valid size looks like, for error hints.
pub const SIZE_HINT: &str = "a size is an integer number of bytes or a string with a unit: \"600MiB\", \"1.5GiB\", \"512KiB\", \"800MB\" (units: B, KiB, MiB, GiB, TiB = powers of 1024; kB, MB, GB, TB = powers of 1000)";

/// Parses a size string (`"600MiB"`, `"1.5 GiB"`, `"800MB"`, `"4096B"`); the error is
/// a short sentence for a diagnostic label. Fractions of a byte are dropped.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("`{trimmed}` has no unit (a string needs one; an integer is a number of bytes)")
        })?;
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim();
    if number.is_empty() {
        return Err(format!("`{trimmed}` does not start with a number"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{number}` is not a number"))?;
    let lower = unit.to_ascii_lowercase();
    let Some(&(_, factor)) = UNITS.iter().find(|(name, _)| *name == lower) else {
        return Err(match lower.as_str() {
            "k" | "m" | "g" | "t" => {
                format!(
                "`{unit}` is ambiguous: write `{}iB` (powers of 1024) or `{}B` (powers of 1000)",
                unit.to_ascii_uppercase(),
                if lower == "k" { "k".into() } else { unit.to_ascii_uppercase() }
            )
            }
            _ => format!("`{unit}` is not a unit of size"),
        });
    };
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes > MAX_SIZE as f64 {
        return Err(format!("`{trimmed}` is more than 1 PiB"));
    }
    Ok(bytes as u64)
}

/// Formats a byte count for reports: exact bytes below 1 KiB, otherwise the largest
/// binary unit with one decimal (`812.0 MiB`, `1.5 GiB`).
pub fn format_size(bytes: u64) -> String {
    const NAMES: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1 << 10 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < NAMES.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", NAMES[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_units_in_any_case() {
        assert_eq!(parse_size("600MiB"), Ok(600 << 20));
        assert_eq!(parse_size(" 1.5 GiB "), Ok(3 << 29));
        assert_eq!(parse_size("512kib"), Ok(512 << 10));
        assert_eq!(parse_size("800MB"), Ok(800_000_000));
        assert_eq!(parse_size("2gb"), Ok(2_000_000_000));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("1kB"), Ok(1000));
    }

    #[test]
    fn a_missing_ambiguous_or_unknown_unit_is_refused() {
        assert!(parse_size("600").unwrap_err().contains("no unit"));
        assert!(parse_size("600M").unwrap_err().contains("ambiguous"));
        assert!(parse_size("1k").unwrap_err().contains("`kB`"));
        assert!(parse_size("3 apples").unwrap_err().contains("not a unit"));
        assert!(parse_size("MiB").unwrap_err().contains("does not start"));
        assert!(parse_size("1.2.3MiB").unwrap_err().contains("not a number"));
        assert!(parse_size("2000TiB").unwrap_err().contains("1 PiB"));
    }

    #[test]
    fn sizes_are_formatted_in_binary_units() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(100 << 20), "100.0 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
    }
}
