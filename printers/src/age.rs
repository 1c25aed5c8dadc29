//! kubectl's AGE formatting: apimachinery's `duration.HumanDuration`, rule for rule.

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// How kubectl shows the time between `since` and `now` (`7s`, `5m`, `3h12m`, `13d`, ...).
///
/// About two significant figures: seconds up to 2m, then `XmYs` up to 10m, minutes up to 3h,
/// `XhYm` up to 8h, hours up to 2d, `XdYh` up to 8d, days up to 2y, `XyYd` up to 8y, then years.
/// A `since` up to two seconds in the future shows `0s` (clock skew between machines), further
/// ahead `<invalid>`.
pub fn human_age(since: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let nanos = now.as_nanosecond() - since.as_nanosecond();
    // Go's time.Duration is an i64 of nanoseconds and `Time.Sub` saturates at its bounds.
    let d = i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX });
    human_duration(d)
}

/// `duration.HumanDuration` of `d` nanoseconds. Integer division truncates toward zero, as Go's
/// `int(d.Seconds())` and `d / time.Minute` do.
fn human_duration(d: i64) -> String {
    let seconds = d / SECOND;
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d / MINUTE;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d / HOUR;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(seconds: i64) -> String {
        let now: jiff::Timestamp = "2024-06-01T12:00:00Z".parse().unwrap();
        let since = now - jiff::SignedDuration::from_secs(seconds);
        human_age(since, now)
    }

    fn age_nanos(nanos: i64) -> String {
        human_duration(nanos)
    }

    const DAY: i64 = 24 * 3600;

    #[test]
    fn seconds_up_to_two_minutes() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(7), "7s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(60), "60s");
        assert_eq!(age(119), "119s");
    }

    #[test]
    fn minutes_and_seconds_below_ten_minutes() {
        assert_eq!(age(120), "2m");
        assert_eq!(age(121), "2m1s");
        assert_eq!(age(5 * 60 + 30), "5m30s");
        assert_eq!(age(9 * 60 + 59), "9m59s");
    }

    #[test]
    fn whole_minutes_below_three_hours() {
        assert_eq!(age(10 * 60), "10m");
        assert_eq!(age(17 * 60 + 45), "17m");
        assert_eq!(age(3 * 3600 - 1), "179m");
    }

    #[test]
    fn hours_and_minutes_below_eight_hours() {
        assert_eq!(age(3 * 3600), "3h");
        assert_eq!(age(3 * 3600 + 12 * 60 + 59), "3h12m");
        assert_eq!(age(8 * 3600 - 1), "7h59m");
    }

    #[test]
    fn whole_hours_below_two_days() {
        assert_eq!(age(8 * 3600), "8h");
        assert_eq!(age(8 * 3600 + 30 * 60), "8h");
        assert_eq!(age(2 * DAY - 1), "47h");
    }

    #[test]
    fn days_and_hours_below_eight_days() {
        assert_eq!(age(2 * DAY), "2d");
        assert_eq!(age(2 * DAY + 5 * 3600), "2d5h");
        assert_eq!(age(8 * DAY - 1), "7d23h");
    }

    #[test]
    fn whole_days_below_two_years() {
        assert_eq!(age(8 * DAY), "8d");
        assert_eq!(age(13 * DAY + 20 * 3600), "13d");
        assert_eq!(age(2 * 365 * DAY - 1), "729d");
    }

    #[test]
    fn years_and_days_below_eight_years() {
        assert_eq!(age(2 * 365 * DAY), "2y");
        assert_eq!(age(2 * 365 * DAY + 10 * DAY), "2y10d");
        assert_eq!(age(8 * 365 * DAY - 1), "7y364d");
    }

    #[test]
    fn whole_years_from_eight_years() {
        assert_eq!(age(8 * 365 * DAY), "8y");
        assert_eq!(age(20 * 365 * DAY + 100 * DAY), "20y");
    }

    #[test]
    fn up_to_two_seconds_in_the_future_reads_as_zero() {
        assert_eq!(age(-1), "0s");
        assert_eq!(age_nanos(-1_999_999_999), "0s");
        assert_eq!(age_nanos(-500_000_000), "0s");
    }

    #[test]
    fn two_seconds_or_more_in_the_future_is_invalid() {
        assert_eq!(age(-2), "<invalid>");
        assert_eq!(age(-3600), "<invalid>");
    }

    #[test]
    fn fractions_of_a_second_truncate() {
        assert_eq!(age_nanos(7 * SECOND + 999_999_999), "7s");
        assert_eq!(age_nanos(2 * MINUTE + 59 * SECOND + 999_999_999), "2m59s");
    }

    #[test]
    fn spans_beyond_go_durations_saturate() {
        let ancient: jiff::Timestamp = "0001-01-01T00:00:00Z".parse().unwrap();
        let now: jiff::Timestamp = "2024-06-01T12:00:00Z".parse().unwrap();
        assert_eq!(human_age(ancient, now), "292y");
        assert_eq!(human_age(now, ancient), "<invalid>");
    }
}
