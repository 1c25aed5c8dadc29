//! kubectl's AGE formatting.

/// How kubectl shows the time between `since` and `now` (`7s`, `5m`, `3h12m`, `13d`, ...).
pub fn human_age(since: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let _ = (since, now);
    String::new()
}
