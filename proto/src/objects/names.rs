//! Syntax of names, label keys and values (Kubernetes' `validation` package).
//!
//! The checks return the same sentences as Kubernetes' apimachinery (`IsDNS1123Label`,
//! `IsQualifiedName`, ...), regex and examples included, so a user who has seen the message from
//! a real cluster recognises it here. The characters are checked by hand rather than with a
//! regex engine: every rule is "these characters, starting and ending with those".
//!
//! Each check returns the problems with a value, empty when it is valid: the API server turns
//! them into field errors (`rudder-apiserver`'s `validation::names`), selectors into parse
//! errors ([`super::selector`]).

/// Longest RFC 1123 or RFC 1035 label, and longest label value.
const LABEL_MAX: usize = 63;
/// Longest RFC 1123 subdomain.
const SUBDOMAIN_MAX: usize = 253;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case \
    alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
    alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric \
    characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and \
    must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric \
    characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Kubernetes' `MaxLenError`.
fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// Kubernetes' `RegexError`: the rule, examples, and the regex the rule stands for. (The double
/// space before each "or" is Kubernetes' own, kept so the sentences match exactly.)
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(fmt);
    out.push_str("')");
    out
}

/// Whether `value` is non-empty, made of `middle` characters, and starts with a `first` and
/// ends with a `last` character: the shape of every name rule here.
fn has_shape(
    value: &str,
    first: fn(char) -> bool,
    middle: fn(char) -> bool,
    last: fn(char) -> bool,
) -> bool {
    let (Some(head), Some(tail)) = (value.chars().next(), value.chars().last()) else {
        return false;
    };
    first(head) && last(tail) && value.chars().all(middle)
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_lower_alnum_or_dash(c: char) -> bool {
    is_lower_alnum(c) || c == '-'
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn is_label_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn is_dns1123_label(value: &str) -> bool {
    has_shape(
        value,
        is_lower_alnum,
        is_lower_alnum_or_dash,
        is_lower_alnum,
    )
}

fn is_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(is_dns1123_label)
}

/// Problems with `value` as an RFC 1123 label (`my-name`): empty when valid.
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_MAX {
        errs.push(max_len_error(LABEL_MAX));
    }
    if !is_dns1123_label(value) {
        // A valid subdomain that is not a valid label can only be wrong by its dots; saying
        // so is clearer than the general rule.
        if is_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Problems with `value` as one segment of a path (Kubernetes' `IsValidPathSegmentName`,
/// the rule for RBAC objects' names, which hold colons: `system:node`).
pub fn path_segment_name(value: &str) -> Vec<String> {
    match value {
        "." => vec!["may not be '.'".into()],
        ".." => vec!["may not be '..'".into()],
        _ => ["/", "%"]
            .iter()
            .filter(|bad| value.contains(*bad))
            .map(|bad| format!("may not contain '{bad}'"))
            .collect(),
    }
}

/// Problems with `value` as an RFC 1123 subdomain (`my.name`): empty when valid.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > SUBDOMAIN_MAX {
        errs.push(max_len_error(SUBDOMAIN_MAX));
    }
    if !is_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Problems with `value` as an RFC 1035 label (Service names: must start with a letter).
pub fn dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_MAX {
        errs.push(max_len_error(LABEL_MAX));
    }
    if !has_shape(
        value,
        |c| c.is_ascii_lowercase(),
        is_lower_alnum_or_dash,
        is_lower_alnum,
    ) {
        errs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Problems with `value` as a qualified name (`prefix/name`: label keys, finalizers).
pub fn qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            let rule = regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"],
            );
            errs.push(format!(
                "a qualified name {rule} with an optional DNS subdomain prefix and '/' \
                 (e.g. 'example.com/MyName')"
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > LABEL_MAX {
        errs.push(format!("name part {}", max_len_error(LABEL_MAX)));
    }
    if !has_shape(name, is_alnum, is_label_key_char, is_alnum) {
        let rule = regex_error(
            QUALIFIED_NAME_MSG,
            QUALIFIED_NAME_FMT,
            &["MyName", "my.name", "123-abc"],
        );
        errs.push(format!("name part {rule}"));
    }
    errs
}

/// Problems with `value` as a label value: empty when valid.
pub fn label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_MAX {
        errs.push(max_len_error(LABEL_MAX));
    }
    if !value.is_empty() && !has_shape(value, is_alnum, is_label_key_char, is_alnum) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Problems with `value` as a port name (`http`, `metrics-1`): at most 15 lowercase
/// alphanumerics or dashes, at least one letter, no dash at either end or next to another.
pub fn port_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 15 {
        errs.push(max_len_error(15));
    }
    if value.is_empty() || !value.chars().all(is_lower_alnum_or_dash) {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !value.chars().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if value.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if value.starts_with('-') || value.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// Problems with `value` as an environment variable name: since Kubernetes 1.34 any printable
/// ASCII but `=` (the relaxed rule), so names like `1ST.VAR` and `my var` are accepted.
pub fn env_var_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.is_empty() {
        errs.push("environment variable name must be non-empty".into());
    }
    if value.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(
            "a valid environment variable name must consist only of printable ASCII characters \
             other than '='"
                .into(),
        );
    }
    errs
}

/// Problems with `value` as a ConfigMap or Secret key (`[-._a-zA-Z0-9]+`, not `.` or `..`).
pub fn config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > SUBDOMAIN_MAX {
        errs.push(max_len_error(SUBDOMAIN_MAX));
    }
    if value.is_empty() || !value.chars().all(is_label_key_char) {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    // A key becomes a file name in a volume; these would escape or shadow the directory.
    if value == "." {
        errs.push("must not be '.'".into());
    } else if value == ".." {
        errs.push("must not be '..'".into());
    } else if value.starts_with("..") {
        errs.push("must not start with '..'".into());
    }
    errs
}

/// Problems with `value` as an IPv4 or IPv6 address in canonical-enough form (no leading
/// zeros in IPv4 octets, as Kubernetes' strict parser requires).
pub fn ip_address(value: &str) -> Vec<String> {
    match value.parse::<std::net::IpAddr>() {
        Ok(_) => Vec::new(),
        Err(_) => vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()],
    }
}

/// Problems with `value` as a CIDR (`10.244.0.0/24`, `fd00::/64`).
pub fn cidr(value: &str) -> Vec<String> {
    const MSG: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";
    let Some((addr, bits)) = value.split_once('/') else {
        return vec![MSG.into()];
    };
    let max = match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return vec![MSG.into()],
    };
    let digits_only = !bits.is_empty() && bits.chars().all(|c| c.is_ascii_digit());
    match bits.parse::<u32>() {
        Ok(n) if digits_only && n <= max && (bits == "0" || !bits.starts_with('0')) => Vec::new(),
        _ => vec![MSG.into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_label_accepts_lowercase_names_with_inner_dashes() {
        for name in ["a", "my-name", "123-abc", "0", &"a".repeat(63)] {
            assert!(dns1123_label(name).is_empty(), "{name}");
        }
    }

    #[test]
    fn dns1123_label_rejects_bad_characters_with_kubernetes_words() {
        let errs = dns1123_label("My_Name");
        assert_eq!(
            errs,
            vec![
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters \
                 or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  \
                 or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                    .to_string()
            ]
        );
    }

    #[test]
    fn dns1123_label_rejects_empty_and_dash_edges() {
        for name in ["", "-a", "a-", "-"] {
            assert_eq!(dns1123_label(name).len(), 1, "{name}");
        }
    }

    #[test]
    fn dns1123_label_says_dots_are_the_problem_for_a_subdomain() {
        assert_eq!(
            dns1123_label("my.name"),
            vec!["must not contain dots".to_string()]
        );
    }

    #[test]
    fn dns1123_label_longer_than_63_is_too_long() {
        assert_eq!(
            dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
    }

    #[test]
    fn dns1123_subdomain_accepts_dotted_names_up_to_253() {
        assert!(dns1123_subdomain("example.com").is_empty());
        assert!(dns1123_subdomain("a.b-c.d1").is_empty());
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long.len(), 253);
        assert!(dns1123_subdomain(&long).is_empty());
        assert_eq!(
            dns1123_subdomain(&format!("{long}e")),
            vec!["must be no more than 253 characters"]
        );
    }

    #[test]
    fn dns1123_subdomain_rejects_empty_segments_and_uppercase() {
        for name in ["", ".a", "a.", "a..b", "A.b", "a_b"] {
            let errs = dns1123_subdomain(name);
            assert_eq!(errs.len(), 1, "{name}");
            assert!(
                errs[0].starts_with("a lowercase RFC 1123 subdomain"),
                "{name}"
            );
        }
    }

    #[test]
    fn dns1035_label_must_start_with_a_letter() {
        assert!(dns1035_label("my-svc").is_empty());
        let errs = dns1035_label("1svc");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("start with an alphabetic character"));
        assert!(errs[0].contains("'[a-z]([-a-z0-9]*[a-z0-9])?'"));
    }

    #[test]
    fn qualified_name_accepts_prefixed_and_mixed_case_names() {
        for name in [
            "app",
            "MyName",
            "my.name",
            "app.kubernetes.io/name",
            "a/B_c.d-e",
        ] {
            assert!(qualified_name(name).is_empty(), "{name}");
        }
    }

    #[test]
    fn qualified_name_names_the_part_at_fault() {
        assert_eq!(
            qualified_name("/name"),
            vec!["prefix part must be non-empty"]
        );
        let errs = qualified_name("Example.com/name");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("prefix part a lowercase RFC 1123 subdomain"));
        let errs = qualified_name("prefix/");
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0], "name part must be non-empty");
        assert!(errs[1].starts_with("name part must consist of alphanumeric characters"));
        assert_eq!(
            qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters"]
        );
    }

    #[test]
    fn qualified_name_rejects_more_than_one_slash() {
        let errs = qualified_name("a/b/c");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("a qualified name must consist of"));
        assert!(errs[0].ends_with(
            "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ));
    }

    #[test]
    fn label_value_may_be_empty_but_not_end_with_a_dash() {
        assert!(label_value("").is_empty());
        assert!(label_value("v1.2_beta").is_empty());
        assert_eq!(label_value("v1-").len(), 1);
        assert_eq!(
            label_value(&"v".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
    }

    #[test]
    fn port_name_needs_a_letter_and_at_most_15_characters() {
        assert!(port_name("http").is_empty());
        assert!(port_name("metrics-9090").is_empty());
        assert_eq!(
            port_name("8080"),
            vec!["must contain at least one letter (a-z)"]
        );
        assert_eq!(
            port_name("a--b"),
            vec!["must not contain consecutive hyphens"]
        );
        assert_eq!(
            port_name("-ab"),
            vec!["must not begin or end with a hyphen"]
        );
        assert_eq!(
            port_name("a".repeat(16).as_str()),
            vec!["must be no more than 15 characters"]
        );
        assert_eq!(port_name("HTTP").len(), 2);
    }

    #[test]
    fn env_var_name_allows_printable_ascii_but_equals() {
        for name in ["PATH", "my.env-name", "1ST", "with space"] {
            assert!(env_var_name(name).is_empty(), "{name}");
        }
        assert_eq!(env_var_name("A=B").len(), 1);
        assert_eq!(env_var_name("TAB\t").len(), 1);
        assert_eq!(env_var_name("").len(), 1);
    }

    #[test]
    fn config_map_key_rejects_slashes_and_dot_dirs() {
        for key in ["game.properties", "KEY_NAME", "key-name", ".hidden"] {
            assert!(config_map_key(key).is_empty(), "{key}");
        }
        assert_eq!(config_map_key("a/b").len(), 1);
        assert_eq!(config_map_key("."), vec!["must not be '.'"]);
        assert_eq!(config_map_key(".."), vec!["must not be '..'"]);
        assert_eq!(config_map_key("..data"), vec!["must not start with '..'"]);
        assert_eq!(config_map_key("").len(), 1);
    }

    #[test]
    fn ip_address_accepts_v4_and_v6_but_not_leading_zeros() {
        assert!(ip_address("10.96.0.1").is_empty());
        assert!(ip_address("2001:db8::1").is_empty());
        assert_eq!(ip_address("010.96.0.1").len(), 1);
        assert_eq!(ip_address("10.96.0").len(), 1);
        assert_eq!(ip_address("None").len(), 1);
    }

    #[test]
    fn cidr_needs_an_address_and_a_prefix_length_in_range() {
        assert!(cidr("10.244.0.0/24").is_empty());
        assert!(cidr("fd00::/64").is_empty());
        assert!(cidr("0.0.0.0/0").is_empty());
        for bad in [
            "10.244.0.0",
            "10.244.0.0/33",
            "10.244.0.0/",
            "10.244.0.0/+8",
            "x/8",
            "::/129",
        ] {
            assert_eq!(cidr(bad).len(), 1, "{bad}");
        }
    }
}
