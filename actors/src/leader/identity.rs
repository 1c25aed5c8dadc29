//! Holder identities: a process's name (the master's `--name`) plus a suffix of its own, so
//! that two lives of one master are two holders (the second must wait for the first's lease,
//! and acquires at a new epoch) and an operator still reads who acts.

/// `<name>_<random uuid>`, new on every call: one per elector, so one per process that runs
/// one elector per lease.
pub fn unique_identity(name: &str) -> String {
    format!("{name}_{}", uuid::Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_life_of_a_name_is_a_holder_of_its_own_that_still_shows_the_name() {
        let first = unique_identity("m1");
        let second = unique_identity("m1");
        assert!(first.starts_with("m1_"), "{first}");
        assert_ne!(first, second);
    }
}
