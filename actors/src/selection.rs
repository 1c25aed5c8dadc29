//! Which controllers run (`--controllers`, as kube-controller-manager reads it): `*` is every
//! controller on by default, `name` turns one on, `-name` off, `none` (alone) none at all.
//! Pure.

/// The controllers this build can run.
pub const KNOWN: &[&str] = &[
    "cronjob",
    "daemonset",
    "deployment",
    "disruption",
    "endpoints",
    "garbagecollector",
    "job",
    "namespace",
    "nodeipam",
    "nodelifecycle",
    "persistentvolume-binder",
    "podgc",
    "replicaset",
    "serviceaccount",
    "statefulset",
];

/// Why a `--controllers` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("--controllers: unknown controller {name:?} (known: {known})", known = KNOWN.join(", "))]
    Unknown { name: String },
    #[error("--controllers: `none` cannot be combined with other entries")]
    NoneWithOthers,
}

/// The controllers selected to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    enabled: Vec<&'static str>,
}

impl Selection {
    /// Every known controller.
    pub fn all() -> Self {
        Self {
            enabled: KNOWN.to_vec(),
        }
    }

    pub fn parse(value: &str) -> Result<Self, SelectionError> {
        let entries: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.contains(&"none") {
            return if entries.len() == 1 {
                Ok(Self {
                    enabled: Vec::new(),
                })
            } else {
                Err(SelectionError::NoneWithOthers)
            };
        }
        let known = |name: &str| {
            KNOWN
                .iter()
                .copied()
                .find(|k| *k == name)
                .ok_or_else(|| SelectionError::Unknown {
                    name: name.to_string(),
                })
        };
        let mut enabled = Vec::new();
        let mut disabled = Vec::new();
        let mut star = false;
        for entry in entries {
            match entry.strip_prefix('-') {
                Some(name) => disabled.push(known(name)?),
                None if entry == "*" => star = true,
                None => enabled.push(known(entry)?),
            }
        }
        if star {
            enabled.extend(KNOWN.iter().copied());
        }
        enabled.retain(|name| !disabled.contains(name));
        enabled.sort_unstable();
        enabled.dedup();
        Ok(Self { enabled })
    }

    pub fn is_enabled(&self, name: &str) -> bool {
        self.enabled.contains(&name)
    }

    pub fn is_empty(&self) -> bool {
        self.enabled.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_read_like_kube_controller_manager() {
        assert!(Selection::parse("*").unwrap().is_enabled("replicaset"));
        assert!(Selection::parse("*").unwrap().is_enabled("deployment"));
        assert!(!Selection::parse("replicaset")
            .unwrap()
            .is_enabled("deployment"));
        assert!(!Selection::parse("*,-replicaset")
            .unwrap()
            .is_enabled("replicaset"));
        assert!(Selection::parse("replicaset")
            .unwrap()
            .is_enabled("replicaset"));
        assert!(Selection::parse("*").unwrap().is_enabled("podgc"));
        assert!(Selection::parse("*").unwrap().is_enabled("disruption"));
        assert!(!Selection::parse("*,-disruption")
            .unwrap()
            .is_enabled("disruption"));
        assert!(Selection::parse("*,-serviceaccount")
            .unwrap()
            .is_enabled("podgc"));
        assert!(!Selection::parse("*,-serviceaccount")
            .unwrap()
            .is_enabled("serviceaccount"));
        assert!(Selection::parse("*")
            .unwrap()
            .is_enabled("persistentvolume-binder"));
        assert!(!Selection::parse("*,-persistentvolume-binder")
            .unwrap()
            .is_enabled("persistentvolume-binder"));
        assert!(Selection::parse("none").unwrap().is_empty());
        assert!(Selection::parse("").unwrap().is_empty());
        assert_eq!(
            Selection::parse("none,replicaset"),
            Err(SelectionError::NoneWithOthers)
        );
        let unknown = Selection::parse("*,-cronjobz").unwrap_err();
        assert!(
            unknown.to_string().contains("\"cronjobz\"")
                && unknown.to_string().contains("replicaset"),
            "{unknown}"
        );
    }
}
