//! Image references as users write them (`luksa/kubia`, `nginx:1.25`,
//! `127.0.0.1:5000/team/app@sha256:...`), normalized the way Docker and Kubernetes do.

/// A normalized reference: registry, repository, and a tag or digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    /// `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: &'static str,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let fail = |reason| ReferenceError {
            reference: text.into(),
            reason,
        };
        if text.is_empty() || text.contains(char::is_whitespace) {
            return Err(fail("it is empty or contains spaces"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) if digest.starts_with("sha256:") && digest.len() == 71 => {
                (rest, Some(digest.to_string()))
            }
            Some(_) => return Err(fail("a digest must be sha256: and 64 hex digits")),
            None => (text, None),
        };
        // A registry is the first component if it looks like a host (has . or :, or is
        // localhost).
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => ("docker.io".to_string(), rest.to_string()),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => {
                (repository.to_string(), Some(tag.to_string()))
            }
            _ => (path, None),
        };
        if repository.is_empty()
            || !repository
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c))
        {
            return Err(fail(
                "the repository must be lowercase letters, digits, . _ - /",
            ));
        }
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Whether Kubernetes' default pull policy is Always (tag `latest`, no digest).
    pub fn is_latest(&self) -> bool {
        self.digest.is_none() && self.tag.as_deref() == Some("latest")
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_normalize_like_docker() {
        assert_eq!(
            Reference::parse("luksa/kubia").unwrap().to_string(),
            "docker.io/luksa/kubia:latest"
        );
        assert_eq!(
            Reference::parse("nginx:1.25").unwrap().to_string(),
            "docker.io/library/nginx:1.25"
        );
        let local = Reference::parse("127.0.0.1:5000/team/app:v2").unwrap();
        assert_eq!(
            (local.registry.as_str(), local.repository.as_str()),
            ("127.0.0.1:5000", "team/app")
        );
        assert!(Reference::parse("luksa/kubia").unwrap().is_latest());
        let pinned = format!("app@sha256:{}", "a".repeat(64));
        assert!(!Reference::parse(&pinned).unwrap().is_latest());
    }

    #[test]
    fn malformed_references_say_why() {
        assert!(Reference::parse("Bad/Name")
            .unwrap_err()
            .to_string()
            .contains("lowercase"));
        assert!(Reference::parse("app@md5:x")
            .unwrap_err()
            .to_string()
            .contains("sha256"));
        assert!(Reference::parse("").is_err());
    }
}
