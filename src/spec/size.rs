//! Byte sizes as written in specs: `64MiB`, `512KiB`, `1GiB`, `10MB`, or a plain number of
//! bytes.

/// A size that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number followed by a known unit.
    #[error("invalid size \"{0}\": write a number and a unit, such as 64MiB, 512KiB or 1GiB")]
    Invalid(String),
    /// Zero: nothing would ever fit.
    #[error("size \"{0}\" is zero; nothing would fit")]
    Zero(String),
    /// More than fits in 64 bits.
    #[error("size \"{0}\" is too large")]
    TooLarge(String),
}

/// Parses a spec size into bytes. Units: `B`, `KiB`, `MiB`, `GiB` (powers of 1024) and `KB`
/// (or `kB`), `MB`, `GB` (powers of 1000); no unit means bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(SizeError::Invalid(text.to_owned()));
    }
    let number: u64 = trimmed[..digits]
        .parse()
        .map_err(|_| SizeError::TooLarge(text.to_owned()))?;
    let factor: u64 = match trimmed[digits..].trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(SizeError::Invalid(text.to_owned())),
    };
    let bytes = number
        .checked_mul(factor)
        .ok_or_else(|| SizeError::TooLarge(text.to_owned()))?;
    if bytes == 0 {
        return Err(SizeError::Zero(text.to_owned()));
    }
    Ok(bytes)
}

/// A size for people: `64 MiB`, `1.5 KiB`, `12 bytes`.
pub fn describe_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (factor, unit) in UNITS {
        if bytes >= factor {
            let whole = bytes / factor;
            let tenths = (bytes % factor) * 10 / factor;
            return if tenths == 0 {
                format!("{whole} {unit}")
            } else {
                format!("{whole}.{tenths} {unit}")
            };
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 7B "), Ok(7));
        for bad in ["", "MiB", "12 parsecs", "-1MiB", "1.5MiB"] {
            assert!(
                matches!(parse_size(bad), Err(SizeError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(matches!(parse_size("0MiB"), Err(SizeError::Zero(_))));
        assert!(matches!(
            parse_size("99999999999999GiB"),
            Err(SizeError::TooLarge(_))
        ));
    }

    #[test]
    fn sizes_describe() {
        assert_eq!(describe_size(64 << 20), "64 MiB");
        assert_eq!(describe_size(1536), "1.5 KiB");
        assert_eq!(describe_size(12), "12 bytes");
    }
}
