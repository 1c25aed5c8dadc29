//! Fault injection for tests and chaos runs: named failpoints (the `fail` crate's) that
//! exist only in a chaos build (`cargo build -p rudder-cli --features chaos`). In any other
//! build [`eval`] is `None` without a lookup and [`configure`] refuses, so a binary users
//! run has no switch that plants a bug.

/// Whether this build has failpoints.
pub const COMPILED_IN: bool = cfg!(feature = "chaos");

/// What `rudder --version` adds in a build with failpoints, for a program that starts a
/// `rudder` binary to tell which build it is.
pub const IN_VERSION: &str = "chaos build: failpoints compiled in";

/// What a build without failpoints says when asked to turn one on.
pub const NOT_COMPILED_IN: &str =
    "this build has no failpoints: build it with `cargo build -p rudder-cli --features chaos`";

/// `f` of the failpoint's argument if the failpoint `name` is on (and its action says to
/// return); `None` when it is off, and always in a build without failpoints.
#[cfg(feature = "chaos")]
#[inline]
pub fn eval<R>(name: &str, f: impl FnOnce(Option<String>) -> R) -> Option<R> {
    fail::eval(name, f)
}

/// `None`: this build has no failpoints.
#[cfg(not(feature = "chaos"))]
#[inline(always)]
pub fn eval<R>(_name: &str, _f: impl FnOnce(Option<String>) -> R) -> Option<R> {
    None
}

/// Turns the failpoint `name` on with `actions` (the `fail` crate's syntax, e.g.
/// `1*return`, `return(3000)`, `off`).
#[cfg(feature = "chaos")]
pub fn configure(name: &str, actions: &str) -> Result<(), String> {
    fail::cfg(name, actions)
}

/// Refused: this build has no failpoints.
#[cfg(not(feature = "chaos"))]
pub fn configure(_name: &str, _actions: &str) -> Result<(), String> {
    Err(NOT_COMPILED_IN.to_string())
}

/// Turns the failpoint `name` off (nothing to do in a build without failpoints).
pub fn remove(name: &str) {
    #[cfg(feature = "chaos")]
    fail::remove(name);
    let _ = name;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failpoint_acts_only_in_a_build_that_has_them() {
        let configured = configure("x-proto-test", "return(7)");
        let seen = eval("x-proto-test", |argument| argument);
        remove("x-proto-test");
        match COMPILED_IN {
            true => {
                assert_eq!(configured, Ok(()));
                assert_eq!(seen, Some(Some("7".to_string())));
                assert_eq!(eval("x-proto-test", |_| ()), None, "removed");
            }
            false => {
                assert_eq!(configured, Err(NOT_COMPILED_IN.to_string()));
                assert_eq!(seen, None);
            }
        }
    }
}
