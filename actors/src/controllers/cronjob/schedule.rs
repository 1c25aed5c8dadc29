//! CronJob schedules: the standard five cron fields and the `@hourly`-style macros that
//! Kubernetes accepts (robfig/cron's `ParseStandard`, without `@every`), read in the
//! CronJob's `spec.timeZone` (UTC without one). Pure: times in, times out.
//!
//! Parsing and matching are `croner`'s (jiff backend): day-of-month and day-of-week are
//! OR-ed unless one of them is `*` or `?`, as in Vixie cron and Kubernetes. Around a DST
//! change croner follows Vixie cron: a fixed time that falls in the skipped hour runs at the
//! first minute after it (robfig/cron skips it that day), and a fixed time in the repeated
//! hour runs once; `*`/step minutes and hours run on every wall-clock match.
//!
//! Refused as Kubernetes refuses them: a `CRON_TZ=` / `TZ=` prefix (spec.timeZone says
//! it), `@every`, croner's extensions (`L`, `W`, `#`, seconds and years).

use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Why a schedule cannot be used; the CronJob does nothing until its spec changes.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "schedule {schedule:?} names its time zone with CRON_TZ= or TZ=: set spec.timeZone instead"
    )]
    TimeZoneInSchedule { schedule: String },
    #[error("schedule {schedule:?}: @every is not a Kubernetes schedule: use a cron expression")]
    Every { schedule: String },
    #[error(
        "schedule {schedule:?}: unknown macro \
         (use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)"
    )]
    UnknownMacro { schedule: String },
    #[error(
        "schedule {schedule:?} has {fields} fields: standard cron has 5 \
         (minute hour day-of-month month day-of-week)"
    )]
    FieldCount { schedule: String, fields: usize },
    #[error(
        "schedule {schedule:?}: field {field:?} is not standard cron \
         (numbers, names, *, ?, ranges, steps, lists)"
    )]
    NotStandard { schedule: String, field: String },
    #[error("schedule {schedule:?} does not parse")]
    Parse {
        schedule: String,
        #[source]
        source: croner::errors::CronError,
    },
    #[error("unknown time zone {name:?} in spec.timeZone")]
    UnknownTimeZone {
        name: String,
        #[source]
        source: jiff::Error,
    },
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    zone: TimeZone,
}

impl Schedule {
    /// Reads `spec.schedule` in `spec.timeZone` (an IANA name; UTC when `None`).
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let zone = match time_zone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|source| ScheduleError::UnknownTimeZone {
                name: name.to_string(),
                source,
            })?,
        };
        let standard = standard_fields(schedule)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&standard)
            .map_err(|source| ScheduleError::Parse {
                schedule: schedule.to_string(),
                source,
            })?;
        Ok(Self { cron, zone })
    }

    /// The first scheduled time strictly after `after` (`None`: it never fires again, as
    /// `30 2 31 2 *`).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let zoned = after.to_zoned(self.zone.clone());
        let next = self.cron.find_next_occurrence(&zoned, false).ok()?;
        Some(next.timestamp())
    }

    /// `at` in RFC 3339 in the schedule's zone (`Z` for UTC), as Go's `time.RFC3339`.
    pub fn rfc3339(&self, at: Timestamp) -> String {
        let zoned = at.to_zoned(self.zone.clone());
        if zoned.offset().seconds() == 0 {
            return at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        }
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The five fields croner should read: macros expanded, `?` and `*/1` made `*` (so the
/// day-of-month / day-of-week rule sees a star where robfig/cron does), anything beyond
/// standard cron refused.
fn standard_fields(schedule: &str) -> Result<String, ScheduleError> {
    let text = schedule.trim();
    let owned = || schedule.to_string();
    if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
        return Err(ScheduleError::TimeZoneInSchedule { schedule: owned() });
    }
    if let Some(name) = text.strip_prefix('@') {
        let expanded = match name.to_ascii_lowercase().as_str() {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            every if every.starts_with("every") => {
                return Err(ScheduleError::Every { schedule: owned() })
            }
            _ => return Err(ScheduleError::UnknownMacro { schedule: owned() }),
        };
        return Ok(expanded.to_string());
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() != 5 {
        let fields = fields.len();
        return Err(ScheduleError::FieldCount {
            schedule: owned(),
            fields,
        });
    }
    let mut normalized = Vec::with_capacity(5);
    for field in fields {
        if !field.split(',').all(is_standard_item) {
            let field = field.to_string();
            return Err(ScheduleError::NotStandard {
                schedule: owned(),
                field,
            });
        }
        normalized.push(match field {
            "?" | "*/1" => "*",
            other => other,
        });
    }
    Ok(normalized.join(" "))
}

/// `*`, `?`, `N`, `N-M`, each optionally `/step`; N and M numbers or three-letter names.
fn is_standard_item(item: &str) -> bool {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    let value = |v: &str| {
        !v.is_empty()
            && (v.bytes().all(|b| b.is_ascii_digit())
                || (v.len() == 3 && v.bytes().all(|b| b.is_ascii_alphabetic())))
    };
    let range_ok = match range {
        "*" | "?" => true,
        _ => match range.split_once('-') {
            Some((low, high)) => value(low) && value(high),
            None => value(range),
        },
    };
    let step_ok = step.is_none_or(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    range_ok && step_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// The next `n` times after `from`, as RFC 3339 in UTC.
    fn next(schedule: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut times = Vec::new();
        let mut t = at(from);
        for _ in 0..n {
            t = schedule.next_after(t).expect("fires");
            times.push(t.to_string());
        }
        times
    }

    #[test]
    fn standard_schedules_and_macros_fire_when_cron_does() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "* * * * *",
                "2024-01-01T00:00:00Z",
                &["2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"],
            ),
            (
                "*/15 * * * *",
                "2024-01-01T00:14:59Z",
                &["2024-01-01T00:15:00Z", "2024-01-01T00:30:00Z"],
            ),
            (
                "@hourly",
                "2024-01-01T00:30:00Z",
                &["2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"],
            ),
            ("@daily", "2024-01-01T00:00:00Z", &["2024-01-02T00:00:00Z"]),
            (
                "@midnight",
                "2024-01-01T12:00:00Z",
                &["2024-01-02T00:00:00Z"],
            ),
            (
                "@weekly",
                "2024-01-01T00:00:00Z",
                &["2024-01-07T00:00:00Z", "2024-01-14T00:00:00Z"],
            ),
            (
                "@monthly",
                "2024-01-15T00:00:00Z",
                &["2024-02-01T00:00:00Z"],
            ),
            ("@yearly", "2024-01-01T00:00:00Z", &["2025-01-01T00:00:00Z"]),
            (
                "@ANNUALLY",
                "2024-06-01T00:00:00Z",
                &["2025-01-01T00:00:00Z"],
            ),
            (
                "30 6-16/4 * * MON-FRI",
                "2024-01-05T11:00:00Z",
                &["2024-01-05T14:30:00Z", "2024-01-08T06:30:00Z"],
            ),
            (
                "0 0 1,15 jan,jul *",
                "2024-01-02T00:00:00Z",
                &["2024-01-15T00:00:00Z", "2024-07-01T00:00:00Z"],
            ),
            (
                "0 0 ? * 7",
                "2024-01-01T00:00:00Z",
                &["2024-01-07T00:00:00Z"],
            ),
        ];
        for (text, from, expected) in cases {
            let schedule = Schedule::parse(text, None).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(next(&schedule, from, expected.len()), *expected, "{text}");
        }
    }

    #[test]
    fn day_of_month_and_day_of_week_are_ored_unless_one_is_a_star() {
        // 2024-09-13 is a Friday; 2024-09-06 and 2024-09-20 are Fridays too.
        let either = Schedule::parse("0 0 13 * 5", None).unwrap();
        let times = next(&either, "2024-09-01T00:00:00Z", 3);
        assert_eq!(
            times,
            [
                "2024-09-06T00:00:00Z",
                "2024-09-13T00:00:00Z",
                "2024-09-20T00:00:00Z"
            ]
        );
        let fridays = Schedule::parse("0 0 * * 5", None).unwrap();
        assert_eq!(
            next(&fridays, "2024-09-01T00:00:00Z", 1),
            ["2024-09-06T00:00:00Z"]
        );
        let thirteenths = Schedule::parse("0 0 13 * ?", None).unwrap();
        assert_eq!(
            next(&thirteenths, "2024-09-01T00:00:00Z", 1),
            ["2024-09-13T00:00:00Z"]
        );
        let every_day = Schedule::parse("0 0 */1 * 5", None).unwrap();
        assert_eq!(
            next(&every_day, "2024-09-01T00:00:00Z", 1),
            ["2024-09-06T00:00:00Z"]
        );
    }

    #[test]
    fn a_time_zone_moves_the_schedule_and_follows_its_dst_changes() {
        let nine = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        // 08:00 UTC in winter (CET), 07:00 UTC after the 2024-03-31 spring-forward.
        let times = next(&nine, "2024-03-29T12:00:00Z", 3);
        assert_eq!(
            times,
            [
                "2024-03-30T08:00:00Z",
                "2024-03-31T07:00:00Z",
                "2024-04-01T07:00:00Z"
            ]
        );
    }

    #[test]
    fn a_fixed_time_in_the_skipped_hour_runs_right_after_it_and_once_in_the_repeated_one() {
        // New York, 2024-03-10: 02:00 EST jumps to 03:00 EDT; 2024-11-03: 02:00 EDT back to
        // 01:00 EST.
        let half_two = Schedule::parse("30 2 * * *", Some("America/New_York")).unwrap();
        let spring = next(&half_two, "2024-03-09T12:00:00Z", 2);
        assert_eq!(
            spring,
            ["2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"],
            "03:00 EDT on 03-10"
        );
        let half_one = Schedule::parse("30 1 * * *", Some("America/New_York")).unwrap();
        let fall = next(&half_one, "2024-11-02T12:00:00Z", 2);
        assert_eq!(
            fall,
            ["2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"],
            "once on 11-03"
        );
    }

    #[test]
    fn every_minute_in_the_repeated_hour_runs_twice() {
        let hourly = Schedule::parse("0 * * * *", Some("America/New_York")).unwrap();
        let times = next(&hourly, "2024-11-03T04:30:00Z", 3);
        // 01:00 EDT, 01:00 EST, 02:00 EST.
        assert_eq!(
            times,
            [
                "2024-11-03T05:00:00Z",
                "2024-11-03T06:00:00Z",
                "2024-11-03T07:00:00Z"
            ]
        );
    }

    #[test]
    fn what_kubernetes_refuses_is_refused() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("TZ=UTC 0 * * * *", None, "TimeZoneInSchedule"),
            (
                "CRON_TZ=Europe/Berlin 0 * * * *",
                None,
                "TimeZoneInSchedule",
            ),
            ("@every 5m", None, "Every"),
            ("@fortnightly", None, "UnknownMacro"),
            ("0 * * * * *", None, "FieldCount"),
            ("* * *", None, "FieldCount"),
            ("0 0 L * *", None, "NotStandard"),
            ("0 0 * * 5#2", None, "NotStandard"),
            ("0 0 15W * *", None, "NotStandard"),
            ("0 0 * * +5", None, "NotStandard"),
            ("61 * * * *", None, "Parse"),
            ("0 * * * *", Some("Mars/Olympus"), "UnknownTimeZone"),
        ];
        for (text, zone, kind) in cases {
            let error = Schedule::parse(text, *zone).expect_err(text);
            assert!(format!("{error:?}").starts_with(kind), "{text}: {error:?}");
        }
    }

    #[test]
    fn times_are_written_in_the_schedule_zone() {
        let t = at("2024-07-01T10:00:00Z");
        assert_eq!(
            Schedule::parse("@hourly", None).unwrap().rfc3339(t),
            "2024-07-01T10:00:00Z"
        );
        let berlin = Schedule::parse("@hourly", Some("Europe/Berlin")).unwrap();
        assert_eq!(berlin.rfc3339(t), "2024-07-01T12:00:00+02:00");
    }

    #[test]
    fn an_impossible_date_never_fires() {
        let never = Schedule::parse("0 0 30 2 *", None).unwrap();
        assert_eq!(never.next_after(at("2024-01-01T00:00:00Z")), None);
    }
}
