//! Duration flags as operators write them: `500ms`, `30s`, `10m`, `1h`.

use std::time::Duration;

use anyhow::{bail, Context};

/// A duration flag's value: `500ms`, `30s`, `10m`, `1h`; a bare number is in `bare_unit`
/// (empty: a bare number is refused).
pub fn parse_flag_duration(flag: &str, value: &str, bare_unit: &str) -> anyhow::Result<Duration> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("{flag} {value:?} is not like 10m, 1h or 30s"))?;
    let unit = if unit.is_empty() { bare_unit } else { unit };
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        "" => bail!("{flag} {value:?} needs a unit (ms, s, m or h)"),
        _ => bail!("{flag} {value:?}: unknown unit {unit:?} (use ms, s, m or h)"),
    };
    anyhow::ensure!(!duration.is_zero(), "{flag} must be more than zero");
    Ok(duration)
}
