//! Int-or-percent values (`maxSurge: 25%`, `maxUnavailable: 1`) scaled against a total, as
//! apimachinery's `GetScaledValueFromIntOrPercent`: an int is itself; `"N%"` is N% of the total,
//! rounded up or down as the caller says (DaemonSets round both bounds up; Deployments round
//! surge up and unavailability down). Pure.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A string value that is not `<digits>%`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is neither an integer nor a percentage like \"25%\"")]
pub struct NotAPercentage {
    pub value: String,
}

/// `value` scaled against `total`, rounded up when `round_up`.
pub fn scaled_value(
    value: &IntOrString,
    total: i32,
    round_up: bool,
) -> Result<i32, NotAPercentage> {
    let text = match value {
        IntOrString::Int(n) => return Ok(*n),
        IntOrString::String(text) => text,
    };
    let percent: i64 = text
        .strip_suffix('%')
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| NotAPercentage {
            value: text.clone(),
        })?;
    let product = percent * i64::from(total);
    let scaled = if round_up {
        product.div_euclid(100) + i64::from(product.rem_euclid(100) != 0)
    } else {
        product.div_euclid(100)
    };
    Ok(i32::try_from(scaled).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_scale_and_round_as_asked() {
        let pct = |s: &str| IntOrString::String(s.into());
        let table = [
            (IntOrString::Int(3), 10, false, Ok(3)),
            (pct("25%"), 10, true, Ok(3)),
            (pct("25%"), 10, false, Ok(2)),
            (pct("10%"), 10, true, Ok(1)),
            (pct("1%"), 10, true, Ok(1)),
            (pct("1%"), 10, false, Ok(0)),
            (pct("100%"), 7, true, Ok(7)),
            (pct("0%"), 7, true, Ok(0)),
            (
                pct("25"),
                7,
                true,
                Err(NotAPercentage { value: "25".into() }),
            ),
            (pct("%"), 7, true, Err(NotAPercentage { value: "%".into() })),
        ];
        for (value, total, round_up, expected) in table {
            assert_eq!(
                scaled_value(&value, total, round_up),
                expected,
                "{value:?} of {total}"
            );
        }
    }
}
