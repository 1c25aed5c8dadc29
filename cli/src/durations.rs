//! Duration flags as operators write them: `500ms`, `30s`, `10m`, `1h`.

use std::time::Duration;

use anyhow::{bail, Context};

/// A duration flag's value: `500ms`, `30s`, `10m`, `1h`; a bare number is in `bare_unit`
/// (empty: a bare number is refused). Zero is refused.
pub fn parse_flag_duration(flag: &str, value: &str, bare_unit: &str) -> anyhow::Result<Duration> {
    let duration = parse_flag_duration_or_zero(flag, value, bare_unit)?;
    anyhow::ensure!(!duration.is_zero(), "{flag} must be more than zero");
    Ok(duration)
}

/// As [`parse_flag_duration`], for a flag whose zero turns something off (`0s`).
pub fn parse_flag_duration_or_zero(
    flag: &str,
    value: &str,
    bare_unit: &str,
) -> anyhow::Result<Duration> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("{flag} {value:?} is not like 10m, 1h or 30s"))?;
    let unit = if unit.is_empty() { bare_unit } else { unit };
    let seconds = |per: u64| {
        number
            .checked_mul(per)
            .map(Duration::from_secs)
            .with_context(|| format!("{flag} {value:?} is longer than any clock can count"))
    };
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => seconds(60)?,
        "h" => seconds(3600)?,
        "" => bail!("{flag} {value:?} needs a unit (ms, s, m or h)"),
        _ => bail!("{flag} {value:?}: unknown unit {unit:?} (use ms, s, m or h)"),
    };
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_too_long_to_count_is_refused_not_a_panic() {
        assert_eq!(
            parse_flag_duration("--ttl", "2h", "h").unwrap(),
            Duration::from_secs(7200)
        );
        let refused = parse_flag_duration("--ttl", "18446744073709551615h", "h").unwrap_err();
        assert!(
            refused.to_string().contains("longer than any clock"),
            "{refused}"
        );
    }

    #[test]
    fn zero_is_refused_unless_the_flag_turns_something_off_with_it() {
        let refused = parse_flag_duration("--timeout", "0s", "s").unwrap_err();
        assert_eq!(refused.to_string(), "--timeout must be more than zero");
        assert_eq!(
            parse_flag_duration_or_zero("--rss-idle", "0s", "s").unwrap(),
            Duration::ZERO
        );
        assert_eq!(
            parse_flag_duration_or_zero("--rss-idle", "0", "s").unwrap(),
            Duration::ZERO
        );
    }
}
