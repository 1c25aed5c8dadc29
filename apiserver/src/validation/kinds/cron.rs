//! Cron schedules as CronJobs accept them: five fields (minute, hour, day of month, month,
//! day of week) or a descriptor (`@hourly`, `@every 90m`), with the rules and messages of the
//! parser Kubernetes uses (robfig/cron's standard parser).
//!
//! Each field is a comma-separated list of ranges; a range is `*` (or `?`), a value, or
//! `low-high`, optionally followed by `/step`. Months and weekdays may be named (`jan`,
//! `mon-fri`).

/// One field's bounds and names.
struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTH_NAMES: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const FIELDS: [Field; 5] = [
    Field {
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        min: 1,
        max: 12,
        names: MONTH_NAMES,
    },
    Field {
        min: 0,
        max: 6,
        names: DAY_NAMES,
    },
];

const DESCRIPTORS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Why `schedule` is not a valid schedule, or `None` when it is.
pub(super) fn schedule_problem(schedule: &str) -> Option<String> {
    let schedule = schedule.trim();
    if let Some(descriptor) = schedule.strip_prefix('@') {
        if DESCRIPTORS.contains(&schedule) {
            return None;
        }
        if let Some(duration) = descriptor.strip_prefix("every ") {
            return duration_problem(duration.trim());
        }
        return Some(format!("unrecognized descriptor: {schedule}"));
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != FIELDS.len() {
        return Some(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    fields
        .iter()
        .zip(&FIELDS)
        .find_map(|(text, field)| field_problem(text, field))
}

fn field_problem(text: &str, field: &Field) -> Option<String> {
    text.split(',')
        .find_map(|range| range_problem(range, field))
}

fn range_problem(expr: &str, field: &Field) -> Option<String> {
    let (range, step) = match expr.split('/').collect::<Vec<_>>().as_slice() {
        [range] => (*range, None),
        [range, step] => (*range, Some(*step)),
        _ => return Some(format!("too many slashes: {expr}")),
    };
    let bounds: Vec<&str> = range.split('-').collect();
    let (start, mut end) = if bounds[0] == "*" || bounds[0] == "?" {
        (field.min, field.max)
    } else {
        let start = match value(bounds[0], field) {
            Ok(v) => v,
            Err(problem) => return Some(problem),
        };
        match bounds.as_slice() {
            [_] => (start, start),
            [_, high] => match value(high, field) {
                Ok(end) => (start, end),
                Err(problem) => return Some(problem),
            },
            _ => return Some(format!("too many hyphens: {expr}")),
        }
    };
    if let Some(step) = step {
        let step = match number(step) {
            Ok(n) => n,
            Err(problem) => return Some(problem),
        };
        // `5/15` means "from 5 to the end, every 15".
        if bounds.len() == 1 {
            end = field.max;
        }
        if step == 0 {
            return Some(format!("step of range should be a positive number: {expr}"));
        }
    }
    if start < field.min {
        return Some(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            field.min
        ));
    }
    if end > field.max {
        return Some(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            field.max
        ));
    }
    if start > end {
        return Some(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    None
}

/// A value given as a number or, for months and weekdays, a name.
fn value(text: &str, field: &Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names.iter().position(|name| *name == lower) {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        return Ok(field.min + index);
    }
    number(text)
}

fn number(text: &str) -> Result<u32, String> {
    if let Some(digits) = text.strip_prefix('-') {
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("negative number (-{digits}) not allowed: {text}"));
        }
    }
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("failed to parse int from {text}"));
    }
    digits
        .parse()
        .map_err(|_| format!("failed to parse int from {text}: value out of range"))
}

/// Go's `time.ParseDuration` syntax for `@every`: numbers with units, like `1h30m`.
fn duration_problem(text: &str) -> Option<String> {
    let invalid = || {
        Some(format!(
            "failed to parse duration {text}: invalid duration {text:?}"
        ))
    };
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return invalid();
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let Ok(amount) = rest[..number_len].parse::<f64>() else {
            return invalid();
        };
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return invalid(),
        };
        total += amount * seconds;
        rest = &rest[unit_len..];
    }
    // robfig/cron rounds `@every` up to whole seconds; zero would fire continuously.
    (total <= 0.0).then(|| format!("failed to parse duration {text}: must be positive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_schedules_are_valid() {
        for schedule in [
            "* * * * *",
            "*/5 * * * *",
            "0 0 * * *",
            "30 2 1,15 * *",
            "0 9-17 * * mon-fri",
            "0 0 1 jan,JUL *",
            "5/15 * * * ?",
            "0 22 * * 1-5",
            "  0 0 * * 0  ",
            "@hourly",
            "@daily",
            "@midnight",
            "@every 1h30m",
            "@every 90s",
        ] {
            assert_eq!(schedule_problem(schedule), None, "{schedule}");
        }
    }

    #[test]
    fn a_schedule_has_exactly_five_fields() {
        assert_eq!(
            schedule_problem("0 0 * *"),
            Some("expected exactly 5 fields, found 4: [0 0 * *]".into())
        );
        assert_eq!(
            schedule_problem("0 0 0 * * *"),
            Some("expected exactly 5 fields, found 6: [0 0 0 * * *]".into())
        );
        assert!(schedule_problem("").is_some());
    }

    #[test]
    fn values_must_be_in_their_fields_range() {
        assert_eq!(
            schedule_problem("60 * * * *"),
            Some("end of range (60) above maximum (59): 60".into())
        );
        assert_eq!(
            schedule_problem("* * 0 * *"),
            Some("beginning of range (0) below minimum (1): 0".into())
        );
        assert_eq!(
            schedule_problem("* * * * 7"),
            Some("end of range (7) above maximum (6): 7".into())
        );
        assert_eq!(
            schedule_problem("* 10-2 * * *"),
            Some("beginning of range (10) beyond end of range (2): 10-2".into())
        );
    }

    #[test]
    fn malformed_ranges_and_steps_are_explained() {
        assert_eq!(
            schedule_problem("*/0 * * * *"),
            Some("step of range should be a positive number: */0".into())
        );
        assert_eq!(
            schedule_problem("1-2-3 * * * *"),
            Some("too many hyphens: 1-2-3".into())
        );
        assert_eq!(
            schedule_problem("*/2/3 * * * *"),
            Some("too many slashes: */2/3".into())
        );
        assert_eq!(
            schedule_problem("x * * * *"),
            Some("failed to parse int from x".into())
        );
        assert_eq!(
            schedule_problem("1,,2 * * * *"),
            Some("failed to parse int from ".into())
        );
        assert_eq!(
            schedule_problem("* * * foo *"),
            Some("failed to parse int from foo".into())
        );
        assert!(schedule_problem("* * * * sun-funday").is_some());
    }

    #[test]
    fn unknown_descriptors_and_bad_durations_are_rejected() {
        assert_eq!(
            schedule_problem("@fortnightly"),
            Some("unrecognized descriptor: @fortnightly".into())
        );
        assert!(schedule_problem("@every").is_some());
        assert!(schedule_problem("@every soon").is_some());
        assert!(schedule_problem("@every 0s").is_some());
    }
}
