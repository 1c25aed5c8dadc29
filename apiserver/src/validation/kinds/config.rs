//! ConfigMap and Secret: key syntax, the 1 MiB size limit, and immutability.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::super::names::config_map_key;
use super::super::{FieldError, Validate};
use super::{each_invalid, immutable};

/// Largest total size of a ConfigMap's or Secret's values: what etcd (and so Kubernetes)
/// accepts in one object, with room for the rest of it.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

/// Checks `keys` of the map at `path` (`data`) and returns the values' total size.
fn keys<'a, V: 'a>(
    errs: &mut Vec<FieldError>,
    path: &str,
    entries: impl IntoIterator<Item = (&'a String, &'a V)>,
    size: impl Fn(&V) -> usize,
) -> usize {
    let mut total = 0usize;
    for (key, value) in entries {
        each_invalid(errs, &format!("{path}[{key}]"), key, config_map_key(key));
        total = total.saturating_add(size(value));
    }
    total
}

impl Validate for ConfigMap {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let data = self.data.iter().flatten();
        let binary = self.binary_data.iter().flatten();
        let mut total = keys(&mut errs, "data", data, String::len);
        total = total.saturating_add(keys(&mut errs, "binaryData", binary, |b| b.0.len()));
        // Both maps become files in the same directory of a volume.
        let binary_data = self.binary_data.as_ref();
        for key in self.data.iter().flatten().map(|(k, _)| k) {
            if binary_data.is_some_and(|b| b.contains_key(key)) {
                errs.push(FieldError::invalid(
                    format!("data[{key}]"),
                    key,
                    "duplicate of key present in binaryData",
                ));
            }
        }
        if total > MAX_DATA_BYTES {
            errs.push(FieldError::too_long(
                "data",
                MAX_DATA_BYTES,
                format!("{total} bytes in all"),
            ));
        }
        errs
    }

    /// An immutable ConfigMap stays as it is: kubelets stop watching it, so a change would
    /// never reach the pods that use it.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        if old.immutable == Some(true) {
            if self.immutable != Some(true) {
                errs.push(FieldError::forbidden("immutable", IMMUTABLE_WHEN_SET));
            }
            if self.data != old.data {
                errs.push(FieldError::forbidden("data", IMMUTABLE_WHEN_SET));
            }
            if self.binary_data != old.binary_data {
                errs.push(FieldError::forbidden("binaryData", IMMUTABLE_WHEN_SET));
            }
        }
        errs
    }
}

fn has_key(secret: &Secret, key: &str) -> bool {
    secret.data.as_ref().is_some_and(|d| d.contains_key(key))
        || secret
            .string_data
            .as_ref()
            .is_some_and(|d| d.contains_key(key))
}

fn secret_type(secret: &Secret) -> &str {
    secret
        .type_
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or("Opaque")
}

impl Validate for Secret {
    /// `stringData` is write-only sugar for `data`; its keys and sizes count the same.
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let data = self.data.iter().flatten();
        let strings = self.string_data.iter().flatten();
        let mut total = keys(&mut errs, "data", data, |b| b.0.len());
        total = total.saturating_add(keys(&mut errs, "stringData", strings, String::len));
        if total > MAX_DATA_BYTES {
            errs.push(FieldError::too_long(
                "data",
                MAX_DATA_BYTES,
                format!("{total} bytes in all"),
            ));
        }

        // The well-known types promise consumers certain keys.
        let required: &[&str] = match secret_type(self) {
            "kubernetes.io/dockercfg" => &[".dockercfg"],
            "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
            "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
            "kubernetes.io/tls" => &["tls.crt", "tls.key"],
            "kubernetes.io/basic-auth"
                if !has_key(self, "username") && !has_key(self, "password") =>
            {
                &["username", "password"]
            }
            _ => &[],
        };
        for key in required.iter().filter(|k| !has_key(self, k)) {
            errs.push(FieldError::required(format!("data[{key}]"), ""));
        }
        if secret_type(self) == "kubernetes.io/service-account-token" {
            let annotations = self.metadata.annotations.as_ref();
            let named = annotations
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .is_some_and(|n| !n.is_empty());
            if !named {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        immutable(&mut errs, "type", &secret_type(self), &secret_type(old));
        if old.immutable == Some(true) {
            if self.immutable != Some(true) {
                errs.push(FieldError::forbidden("immutable", IMMUTABLE_WHEN_SET));
            }
            let adds_strings = self.string_data.as_ref().is_some_and(|s| !s.is_empty());
            if self.data != old.data || adds_strings {
                errs.push(FieldError::forbidden("data", IMMUTABLE_WHEN_SET));
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::FieldErrorKind;
    use super::super::test_util::{from_json, only, paths};
    use super::*;
    use serde_json::json;

    fn config_map(change: impl FnOnce(&mut serde_json::Value)) -> ConfigMap {
        let mut value = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "game-demo"},
            "data": {
                "player_initial_lives": "3",
                "ui_properties_file_name": "user-interface.properties",
                "game.properties": "enemy.types=aliens,monsters\nplayer.maximum-lives=5\n"
            },
            "binaryData": {"logo.png": "iVBORw0KGgo="}
        });
        change(&mut value);
        from_json(value)
    }

    fn secret(change: impl FnOnce(&mut serde_json::Value)) -> Secret {
        let mut value = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "secret-basic-auth"},
            "type": "kubernetes.io/basic-auth",
            "data": {"username": "YWRtaW4="},
            "stringData": {"password": "t0p-Secret"}
        });
        change(&mut value);
        from_json(value)
    }

    #[test]
    fn the_docs_config_map_is_valid() {
        assert_eq!(config_map(|_| {}).validate(), vec![]);
    }

    #[test]
    fn config_keys_must_be_file_names() {
        let errs = config_map(|c| {
            c["data"]["a/b"] = json!("x");
            c["binaryData"][".."] = json!("");
        })
        .validate();
        assert_eq!(paths(&errs), ["data[a/b]", "binaryData[..]"]);
        assert!(errs[0]
            .detail
            .starts_with("a valid config key must consist of alphanumeric"));
        assert_eq!(errs[1].detail, "must not be '..'");
    }

    #[test]
    fn a_key_may_not_be_in_both_data_and_binary_data() {
        let errs = config_map(|c| c["data"]["logo.png"] = json!("text")).validate();
        assert_eq!(
            only(&errs, "data[logo.png]").detail,
            "duplicate of key present in binaryData"
        );
    }

    #[test]
    fn config_data_over_1_mib_is_too_long() {
        let half = "x".repeat(MAX_DATA_BYTES / 2);
        let at_limit = config_map(|c| {
            c["data"] = json!({"a": half, "b": half});
            c["binaryData"] = json!({});
        });
        assert_eq!(at_limit.validate(), vec![]);
        let errs = config_map(|c| c["data"] = json!({"a": half, "b": half})).validate();
        assert_eq!(
            only(&errs, "data").kind,
            FieldErrorKind::TooLong { max: 1_048_576 }
        );
    }

    #[test]
    fn an_immutable_config_map_keeps_its_data() {
        let old = config_map(|c| c["immutable"] = json!(true));
        let relabelled = config_map(|c| {
            c["immutable"] = json!(true);
            c["metadata"]["labels"] = json!({"a": "b"});
        });
        assert_eq!(relabelled.validate_update(&old), vec![]);
        let changed = config_map(|c| {
            c["immutable"] = json!(true);
            c["data"]["player_initial_lives"] = json!("4");
            c["binaryData"] = json!({});
        });
        assert_eq!(
            paths(&changed.validate_update(&old)),
            ["data", "binaryData"]
        );
        let unlocked = config_map(|c| c["immutable"] = json!(false));
        let errs = unlocked.validate_update(&old);
        assert_eq!(
            only(&errs, "immutable").to_string(),
            "immutable: Forbidden: field is immutable when `immutable` is set"
        );
        let mutable = config_map(|c| c["data"]["player_initial_lives"] = json!("4"));
        assert_eq!(mutable.validate_update(&config_map(|_| {})), vec![]);
    }

    #[test]
    fn the_docs_secret_is_valid() {
        assert_eq!(secret(|_| {}).validate(), vec![]);
        let opaque: Secret = from_json(json!({"metadata": {"name": "s"}, "data": {"k": "dg=="}}));
        assert_eq!(opaque.validate(), vec![]);
    }

    #[test]
    fn secret_keys_and_size_are_checked() {
        let errs = secret(|s| s["stringData"]["bad key"] = json!("v")).validate();
        only(&errs, "stringData[bad key]");
        let big = "x".repeat(MAX_DATA_BYTES + 1);
        let errs = secret(|s| s["stringData"]["password"] = json!(big)).validate();
        assert_eq!(
            only(&errs, "data").kind,
            FieldErrorKind::TooLong {
                max: MAX_DATA_BYTES
            }
        );
    }

    #[test]
    fn typed_secrets_need_their_keys() {
        let errs = secret(|s| {
            s["type"] = json!("kubernetes.io/tls");
            s["data"] = json!({"tls.crt": "Y2VydA=="});
        })
        .validate();
        assert_eq!(only(&errs, "data[tls.key]").kind, FieldErrorKind::Required);
        let errs = secret(|s| {
            s["data"] = json!({});
            s["stringData"] = json!({});
        })
        .validate();
        assert_eq!(paths(&errs), ["data[username]", "data[password]"]);
        let errs = secret(|s| s["type"] = json!("kubernetes.io/service-account-token")).validate();
        only(
            &errs,
            "metadata.annotations[kubernetes.io/service-account.name]",
        );
    }

    #[test]
    fn a_secret_type_is_immutable() {
        let old = secret(|_| {});
        let new = secret(|s| s["type"] = json!("Opaque"));
        assert_eq!(
            only(&new.validate_update(&old), "type").detail,
            "field is immutable"
        );
        let opaque = secret(|s| s["type"] = json!("Opaque"));
        let untyped = secret(|s| {
            s.as_object_mut().expect("object").remove("type");
        });
        assert_eq!(untyped.validate_update(&opaque), vec![], "unset is Opaque");
    }

    #[test]
    fn an_immutable_secret_keeps_its_data() {
        let old = secret(|s| s["immutable"] = json!(true));
        let same = secret(|s| {
            s["immutable"] = json!(true);
            s["stringData"] = json!({});
        });
        let old_without_strings = same.clone();
        assert_eq!(same.validate_update(&old_without_strings), vec![]);
        let changed = secret(|s| {
            s["immutable"] = json!(true);
            s["data"]["username"] = json!("cm9vdA==");
        });
        assert!(paths(&changed.validate_update(&old)).contains(&"data"));
    }
}
