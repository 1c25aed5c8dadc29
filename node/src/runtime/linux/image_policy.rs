//! Where a container's image comes from, by its pull policy (Kubernetes' rules: `Always` for
//! `:latest` and untagged, `IfNotPresent` otherwise), and the reasons a pod shows when there
//! is none. Pure: the worker looks in the store and pulls.

use crate::image::pull::PullError;
use crate::image::reference::{Reference, ReferenceError};

/// Where to get the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// The node's store has it: this manifest.
    Stored(String),
    /// Pull it from its registry.
    Pull,
}

/// Why a container has no image.
#[derive(Debug, thiserror::Error)]
pub enum ImageFailure {
    #[error(transparent)]
    Invalid(#[from] ReferenceError),
    #[error("the pull policy is Never and the image is not here")]
    NeverPull,
    /// Not in the store, and the node does not pull from this registry.
    #[error("not here, and the node does not pull from {0}")]
    NotHere(String),
    #[error(transparent)]
    Pull(#[from] PullError),
}

/// The container's pull policy (`None`: the default for the reference), whether the node
/// pulls from the image's registry, and the manifest its store holds, if any.
pub fn image_source(
    reference: &Reference,
    pull_policy: Option<&str>,
    node_pulls: bool,
    stored: Option<String>,
) -> Result<ImageSource, ImageFailure> {
    let latest = reference.digest.is_none() && reference.tag.as_deref() == Some("latest");
    let policy = pull_policy.unwrap_or(if latest { "Always" } else { "IfNotPresent" });
    match (policy, node_pulls, stored) {
        ("Never", _, Some(manifest)) => Ok(ImageSource::Stored(manifest)),
        ("Never", _, None) => Err(ImageFailure::NeverPull),
        // The store is this node's only source for a registry it does not pull from.
        (_, false, Some(manifest)) => Ok(ImageSource::Stored(manifest)),
        (_, false, None) => Err(ImageFailure::NotHere(reference.registry.clone())),
        ("IfNotPresent", true, Some(manifest)) => Ok(ImageSource::Stored(manifest)),
        (_, true, _) => Ok(ImageSource::Pull),
    }
}

/// Kubernetes' reasons: the first pull failure is ErrImagePull, then ImagePullBackOff.
/// `failures`: the failures in a row before this one.
pub fn image_failure(image: &str, failure: &ImageFailure, failures: u32) -> (&'static str, String) {
    let why = match failure {
        ImageFailure::Invalid(reason) => return ("InvalidImageName", reason.to_string()),
        ImageFailure::NeverPull => {
            return (
                "ErrImageNeverPull",
                format!("Container image {image:?} is not present with pull policy of Never"),
            )
        }
        ImageFailure::NotHere(registry) => format!(
            "image {image:?} is not in this node's image store, and the node does not pull \
             from {registry} (rudder node --registries; registries on loopback need no flag); import it \
             with `rudder image import`"
        ),
        ImageFailure::Pull(reason) => format!("pulling image {image:?}: {reason}"),
    };
    if failures == 0 {
        ("ErrImagePull", why)
    } else {
        (
            "ImagePullBackOff",
            format!("Back-off pulling image {image:?}: {why}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(
        image: &str,
        policy: Option<&str>,
        pulls: bool,
        stored: bool,
    ) -> Result<ImageSource, ImageFailure> {
        let reference = Reference::parse(image).unwrap();
        image_source(
            &reference,
            policy,
            pulls,
            stored.then(|| "sha256:here".to_string()),
        )
    }

    #[test]
    fn latest_and_untagged_images_are_pulled_again_where_the_node_pulls() {
        for image in ["kubia", "kubia:latest"] {
            assert_eq!(
                source(image, None, true, true).unwrap(),
                ImageSource::Pull,
                "{image}"
            );
        }
        let stored = ImageSource::Stored("sha256:here".into());
        assert_eq!(source("kubia:v1", None, true, true).unwrap(), stored);
        assert_eq!(
            source("kubia:v1", None, true, false).unwrap(),
            ImageSource::Pull
        );
        assert_eq!(
            source("kubia", Some("IfNotPresent"), true, true).unwrap(),
            stored
        );
    }

    #[test]
    fn a_node_that_does_not_pull_runs_only_what_its_store_holds() {
        let stored = ImageSource::Stored("sha256:here".into());
        assert_eq!(
            source("kubia", Some("Always"), false, true).unwrap(),
            stored
        );
        let failure = source("kubia:v1", None, false, false).unwrap_err();
        assert!(
            matches!(&failure, ImageFailure::NotHere(r) if r == "docker.io"),
            "{failure:?}"
        );
    }

    #[test]
    fn never_means_the_store_or_nothing() {
        let stored = ImageSource::Stored("sha256:here".into());
        assert_eq!(source("kubia", Some("Never"), true, true).unwrap(), stored);
        assert!(matches!(
            source("kubia", Some("Never"), true, false),
            Err(ImageFailure::NeverPull)
        ));
    }

    #[test]
    fn a_missing_image_is_err_image_pull_then_back_off() {
        let failure = ImageFailure::NotHere("docker.io".into());
        let (reason, message) = image_failure("nope", &failure, 0);
        assert_eq!(reason, "ErrImagePull");
        assert!(message.contains("rudder image import"), "{message}");
        let (reason, message) = image_failure("nope", &failure, 1);
        assert_eq!(reason, "ImagePullBackOff");
        assert!(message.starts_with("Back-off pulling image"), "{message}");
    }
}
