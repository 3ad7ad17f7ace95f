//! Durations as written in specs: `30s`, `15m`, `1h30m`, `250ms`, `2d`, or ISO 8601 `PT15M`.

use std::time::Duration;

/// Parses a spec duration. Units: `ms`, `s`, `m`, `h`, `d`, combined largest first
/// (`1h30m`); ISO 8601 durations (`PT15M`, `P1DT2H`) are accepted too. Zero is allowed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    if text.starts_with(['P', 'p']) {
        return parse_iso(text);
    }
    let invalid = || {
        format!(
            "invalid duration \"{text}\": write a number and a unit, such as 30s, 15m, 1h30m or 250ms"
        )
    };
    let mut total = Duration::ZERO;
    let mut rest = text;
    let mut last_rank: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = rest.split_at(unit_len);
        let (rank, millis) = match unit {
            "d" => (0, 86_400_000),
            "h" => (1, 3_600_000),
            "m" => (2, 60_000),
            "s" => (3, 1_000),
            "ms" => (4, 1),
            _ => return Err(invalid()),
        };
        // Units largest first, each once: `30m1h` or `1m1m` is more likely a typo than intent.
        if last_rank.is_some_and(|last| rank <= last) {
            return Err(invalid());
        }
        last_rank = Some(rank);
        let part = number
            .checked_mul(millis)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("duration \"{text}\" is too long"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("duration \"{text}\" is too long"))?;
        rest = tail;
    }
    Ok(total)
}

fn parse_iso(text: &str) -> Result<Duration, String> {
    let span: jiff::Span = text
        .parse()
        .map_err(|err| format!("invalid ISO 8601 duration \"{text}\": {err}"))?;
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err(format!(
            "duration \"{text}\" uses years or months, whose length varies: use days or smaller units"
        ));
    }
    let signed = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|err| format!("invalid duration \"{text}\": {err}"))?;
    Duration::try_from(signed).map_err(|_| format!("duration \"{text}\" is negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_forms() {
        let ok = |text: &str| parse_duration(text).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("15m"), Duration::from_secs(900));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("1d"), Duration::from_secs(86_400));
        assert_eq!(ok("PT15M"), Duration::from_secs(900));
        assert_eq!(ok("P1DT1H"), Duration::from_secs(90_000));
    }

    #[test]
    fn rejects_nonsense() {
        for text in [
            "",
            "15",
            "m",
            "1x",
            "30m1h",
            "1m1m",
            "-5s",
            "1.5h",
            "P1M",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }
}
