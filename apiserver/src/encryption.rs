//! Secrets encrypted at rest: the values of sealed resources (Secrets) are encrypted with
//! AES-256-GCM before they enter the store, so no Raft log entry, snapshot, RocksDB file or
//! backup holds one in clear. Pure: the keyring, the sealed format, sealing and opening.
//! (The shell: `encryption/keyring_file.rs` reads the keyring and follows its changes; the
//! registry seals what it writes and opens what it reads.)
//!
//! A sealed value is `k8s:enc:aesgcm:v1:<key name>:`, a 12-byte random nonce, then the
//! ciphertext and its 16-byte tag: kube-apiserver's aesgcm format, so tools that look into
//! its etcd recognise ours. The store key is the authenticated data, as there: a sealed value
//! copied under another key does not open.
//!
//! A keyring holds named keys; the first seals, every one opens. Rotation: a key is added
//! (it opens), made first on every master (it seals), every Secret is rewritten, then the old
//! key is removed. A value under a sealed resource without the prefix was written before
//! encryption was on: it is read as it is. Such a value, and one sealed by a key that is not
//! first, is *stale*: an update rewrites it even when nothing else changed.

pub mod keyring_file;

use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use rudder_raftstore::kv::KeyValue;

use crate::error::ApiError;

/// The resources whose values are sealed (as kube-apiserver's default configuration).
pub const SEALED_PREFIXES: [&[u8]; 1] = [b"/registry/secrets/"];

/// What every sealed value starts with, before the key's name.
const PREFIX: &[u8] = b"k8s:enc:aesgcm:v1:";

/// Bytes of an AES-256 key.
pub const KEY_BYTES: usize = 32;

/// Whether values under `store_key` are sealed.
pub fn is_sealed(store_key: &[u8]) -> bool {
    SEALED_PREFIXES
        .iter()
        .any(|prefix| store_key.starts_with(prefix))
}

/// Named AES-256-GCM keys, the first of which seals.
pub struct Keyring {
    keys: Vec<NamedKey>,
}

struct NamedKey {
    name: String,
    material: [u8; KEY_BYTES],
    key: LessSafeKey,
}

/// A stored value, opened.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    pub plain: Vec<u8>,
    /// Written in clear or sealed by a key that is not first: to be sealed again.
    pub stale: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
    #[error("the keyring holds no key")]
    Empty,
    #[error("the keyring has no key {0:?}")]
    NoSuchKey(String),
    #[error("key {0:?} seals new writes: make another key first (`use`), then remove it")]
    RemovingFirst(String),
    #[error("{0}")]
    BadName(String),
    #[error("the keyring already has a key {0:?}")]
    Taken(String),
    #[error("this machine gave no random bytes")]
    NoRandomness,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error(
        "it was sealed with key {0:?}, which this master's keyring lacks: every master needs \
         every key that sealed a stored value"
    )]
    UnknownKey(String),
    #[error(
        "it does not open with key {0:?}: the stored value is damaged, or this keyring's \
         {0:?} is not the key that sealed it"
    )]
    Damaged(String),
    #[error("its sealed form is malformed ({0})")]
    Malformed(&'static str),
}

impl Keyring {
    /// A keyring of one new random key named `name`.
    pub fn generate(name: &str) -> Result<Self, KeyringError> {
        let mut keyring = Self { keys: Vec::new() };
        keyring.add(name)?;
        Ok(keyring)
    }

    /// A keyring of the given keys, the first sealing.
    fn from_keys(keys: Vec<(String, [u8; KEY_BYTES])>) -> Result<Self, KeyringError> {
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        let keys = keys
            .into_iter()
            .map(|(name, material)| NamedKey::new(name, material))
            .collect();
        Ok(Self { keys })
    }

    /// The keyring file's text: `NAME = BASE64` per line, the sealing key first; `#` starts
    /// a comment.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut keys: Vec<(String, [u8; KEY_BYTES])> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_error = |why: String| KeyringError::Line {
                line: index + 1,
                why,
            };
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((name, encoded)) = line.split_once('=') else {
                return Err(line_error("expected NAME = BASE64-KEY".into()));
            };
            let name = name.trim();
            check_name(name).map_err(line_error)?;
            if keys.iter().any(|(known, _)| known == name) {
                return Err(line_error(format!("key {name:?} is listed twice")));
            }
            let material = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|error| line_error(format!("key {name:?} is not base64: {error}")))?;
            let material: [u8; KEY_BYTES] = material.try_into().map_err(|bytes: Vec<u8>| {
                line_error(format!(
                    "key {name:?} is {} bytes; AES-256 takes {KEY_BYTES}",
                    bytes.len()
                ))
            })?;
            keys.push((name.to_string(), material));
        }
        Self::from_keys(keys)
    }

    /// The keyring as its file holds it (see [`Keyring::parse`]).
    pub fn to_text(&self) -> String {
        let mut text = String::from(
            "# Rudder's Secret-encryption keys (AES-256-GCM): the first seals new writes, \
             every one opens.\n# Keep this file secret, and the same on every master.\n",
        );
        for key in &self.keys {
            let encoded = base64::engine::general_purpose::STANDARD.encode(key.material);
            text.push_str(&format!("{} = {encoded}\n", key.name));
        }
        text
    }

    /// The keys' names, the sealing key first.
    pub fn names(&self) -> Vec<&str> {
        self.keys.iter().map(|key| key.name.as_str()).collect()
    }

    /// The key that seals.
    pub fn sealing(&self) -> &str {
        &self.keys[0].name
    }

    /// A name no key has: `key` and one more than the highest number in use.
    pub fn next_name(&self) -> String {
        let highest = self
            .keys
            .iter()
            .filter_map(|key| key.name.strip_prefix("key")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        format!("key{}", highest + 1)
    }

    /// Adds a new random key last (it opens, and seals once made first).
    pub fn add(&mut self, name: &str) -> Result<(), KeyringError> {
        check_name(name).map_err(KeyringError::BadName)?;
        if self.keys.iter().any(|key| key.name == name) {
            return Err(KeyringError::Taken(name.to_string()));
        }
        let mut material = [0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut material)
            .map_err(|_| KeyringError::NoRandomness)?;
        self.keys.push(NamedKey::new(name.to_string(), material));
        Ok(())
    }

    /// Makes `name` the sealing key.
    pub fn make_first(&mut self, name: &str) -> Result<(), KeyringError> {
        let at = self.position(name)?;
        let key = self.keys.remove(at);
        self.keys.insert(0, key);
        Ok(())
    }

    /// Removes `name`, which must not be the sealing key.
    pub fn remove(&mut self, name: &str) -> Result<(), KeyringError> {
        match self.position(name)? {
            0 => Err(KeyringError::RemovingFirst(name.to_string())),
            at => {
                self.keys.remove(at);
                Ok(())
            }
        }
    }

    fn position(&self, name: &str) -> Result<usize, KeyringError> {
        self.keys
            .iter()
            .position(|key| key.name == name)
            .ok_or_else(|| KeyringError::NoSuchKey(name.to_string()))
    }

    /// `plain`, to be stored under `store_key`, sealed by the first key.
    pub fn seal(&self, store_key: &[u8], plain: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let first = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyringError::NoRandomness)?;
        let mut sealed = plain.to_vec();
        first
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(store_key),
                &mut sealed,
            )
            .expect("AES-GCM seals any value the store can hold");
        let mut stored =
            Vec::with_capacity(PREFIX.len() + first.name.len() + 1 + NONCE_LEN + sealed.len());
        stored.extend_from_slice(PREFIX);
        stored.extend_from_slice(first.name.as_bytes());
        stored.push(b':');
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&sealed);
        Ok(stored)
    }

    /// The value stored under `store_key` in clear. Values without the sealed prefix are
    /// returned as they are (written before encryption was on), stale.
    pub fn open(&self, store_key: &[u8], stored: &[u8]) -> Result<Opened, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(Opened {
                plain: stored.to_vec(),
                stale: true,
            });
        };
        let colon = rest
            .iter()
            .position(|&byte| byte == b':')
            .ok_or(OpenError::Malformed("no key name"))?;
        let name = std::str::from_utf8(&rest[..colon])
            .map_err(|_| OpenError::Malformed("the key name is not UTF-8"))?;
        let body = &rest[colon + 1..];
        if body.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(OpenError::Malformed("shorter than a nonce and a tag"));
        }
        let at = self
            .keys
            .iter()
            .position(|key| key.name == name)
            .ok_or_else(|| OpenError::UnknownKey(name.to_string()))?;
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| OpenError::Malformed("the nonce"))?;
        let mut plain = sealed.to_vec();
        let opened_len = self.keys[at]
            .key
            .open_in_place(nonce, Aad::from(store_key), &mut plain)
            .map_err(|_| OpenError::Damaged(name.to_string()))?
            .len();
        plain.truncate(opened_len);
        Ok(Opened {
            plain,
            stale: at != 0,
        })
    }
}

impl NamedKey {
    fn new(name: String, material: [u8; KEY_BYTES]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, &material).expect("32 bytes is an AES-256 key");
        Self {
            name,
            material,
            key: LessSafeKey::new(unbound),
        }
    }
}

/// The keyring a master seals and opens with, replaced whole when its file changes. Cheap
/// to clone.
#[derive(Clone, Debug)]
pub struct SharedKeyring(Arc<RwLock<Arc<Keyring>>>);

impl SharedKeyring {
    pub fn new(keyring: Keyring) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(keyring))))
    }

    pub fn current(&self) -> Arc<Keyring> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn replace(&self, keyring: Keyring) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(keyring);
    }
}

/// One keyring shared by every in-process master of this process, one random key made at
/// first use: tests start several masters in one process, and a cluster's masters must
/// share their keyring. (A server reads its keyring from a file: `keyring_file`.)
pub fn keys_of_this_process() -> SharedKeyring {
    static KEYS: std::sync::OnceLock<SharedKeyring> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        SharedKeyring::new(Keyring::generate("key1").expect("this machine gives random bytes"))
    })
    .clone()
}

/// Opens `kv`'s value in place when it is a Secret's (sealed); answers whether it is stale
/// (in clear, or sealed by a key that no longer seals).
pub fn open_in_place(keys: &Keyring, kv: &mut KeyValue) -> Result<bool, ApiError> {
    if !is_sealed(&kv.key) {
        return Ok(false);
    }
    let opened = keys.open(&kv.key, &kv.value).map_err(|error| {
        ApiError::internal(format!(
            "the stored {} cannot be read: {error}",
            String::from_utf8_lossy(&kv.key)
        ))
    })?;
    kv.value = opened.plain.into();
    Ok(opened.stale)
}

/// Key names go into every sealed value, before a `:`.
fn check_name(name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if fine {
        Ok(())
    } else {
        Err(format!(
            "key name {name:?}: use 1 to 63 letters, digits, '-' or '_'"
        ))
    }
}

/// Never the keys themselves.
impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.names())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"/registry/secrets/default/db";

    fn two_keys() -> Keyring {
        let mut keyring = Keyring::generate("key1").unwrap();
        keyring.add("key2").unwrap();
        keyring
    }

    #[test]
    fn a_sealed_value_opens_to_what_was_sealed_and_holds_none_of_it() {
        let keyring = Keyring::generate("key1").unwrap();
        let plain = br#"{"data":{"password":"c2VjcmV0LWNhbmFyeQ=="}}"#;
        let sealed = keyring.seal(KEY, plain).unwrap();
        assert!(sealed.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
        assert!(!sealed
            .windows(10)
            .any(|w| plain.windows(10).any(|p| p == w)));
        let opened = keyring.open(KEY, &sealed).unwrap();
        assert_eq!(opened.plain, plain);
        assert!(!opened.stale);
        // A nonce of its own each time.
        assert_ne!(keyring.seal(KEY, plain).unwrap(), sealed);
    }

    #[test]
    fn a_sealed_value_moved_under_another_key_or_altered_does_not_open() {
        let keyring = Keyring::generate("key1").unwrap();
        let sealed = keyring.seal(KEY, b"{}").unwrap();
        assert_eq!(
            keyring.open(b"/registry/secrets/default/other", &sealed),
            Err(OpenError::Damaged("key1".into()))
        );
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(
            keyring.open(KEY, &altered),
            Err(OpenError::Damaged("key1".into()))
        );
        let other = Keyring::generate("key1").unwrap();
        assert_eq!(
            other.open(KEY, &sealed),
            Err(OpenError::Damaged("key1".into()))
        );
        assert_eq!(
            Keyring::generate("key9").unwrap().open(KEY, &sealed),
            Err(OpenError::UnknownKey("key1".into()))
        );
        assert_eq!(
            keyring.open(KEY, b"k8s:enc:aesgcm:v1:key1:short"),
            Err(OpenError::Malformed("shorter than a nonce and a tag"))
        );
    }

    #[test]
    fn values_in_clear_or_sealed_by_a_later_key_are_stale() {
        let mut keyring = two_keys();
        let opened = keyring.open(KEY, b"{\"kind\":\"Secret\"}").unwrap();
        assert_eq!(opened.plain, b"{\"kind\":\"Secret\"}");
        assert!(opened.stale);

        let by_first = keyring.seal(KEY, b"{}").unwrap();
        keyring.make_first("key2").unwrap();
        assert_eq!(keyring.sealing(), "key2");
        let opened = keyring.open(KEY, &by_first).unwrap();
        assert_eq!((opened.plain.as_slice(), opened.stale), (&b"{}"[..], true));
        let by_second = keyring.seal(KEY, b"{}").unwrap();
        assert!(by_second.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
        assert!(!keyring.open(KEY, &by_second).unwrap().stale);
    }

    #[test]
    fn the_file_text_round_trips_and_bad_lines_are_named() {
        let keyring = two_keys();
        let back = Keyring::parse(&keyring.to_text()).unwrap();
        assert_eq!(back.names(), ["key1", "key2"]);
        let sealed = keyring.seal(KEY, b"x").unwrap();
        assert_eq!(back.open(KEY, &sealed).unwrap().plain, b"x");

        assert_eq!(
            Keyring::parse("# nothing\n").unwrap_err(),
            KeyringError::Empty
        );
        assert!(matches!(
            Keyring::parse("key1 c2hvcnQ=").unwrap_err(),
            KeyringError::Line { line: 1, .. }
        ));
        let short = Keyring::parse("\nkey1 = c2hvcnQ=").unwrap_err().to_string();
        assert_eq!(short, "line 2: key \"key1\" is 5 bytes; AES-256 takes 32");
        let text = keyring.to_text();
        let first = text.lines().find(|l| l.starts_with("key1")).unwrap();
        let twice = Keyring::parse(&format!("{first}\n{first}\n")).unwrap_err();
        assert_eq!(twice.to_string(), "line 2: key \"key1\" is listed twice");
        let bad_name = Keyring::parse(&first.replace("key1", "key:1")).unwrap_err();
        assert!(
            bad_name.to_string().contains("letters, digits"),
            "{bad_name}"
        );
    }

    #[test]
    fn keys_are_added_made_first_and_removed_but_never_the_sealing_one() {
        let mut keyring = two_keys();
        assert_eq!(keyring.next_name(), "key3");
        assert_eq!(
            keyring.remove("key1"),
            Err(KeyringError::RemovingFirst("key1".into()))
        );
        assert_eq!(
            keyring.make_first("key7"),
            Err(KeyringError::NoSuchKey("key7".into()))
        );
        assert_eq!(keyring.add("key2"), Err(KeyringError::Taken("key2".into())));
        keyring.make_first("key2").unwrap();
        keyring.remove("key1").unwrap();
        assert_eq!(keyring.names(), ["key2"]);
        assert_eq!(format!("{keyring:?}"), "Keyring { keys: [\"key2\"] }");
    }

    #[test]
    fn only_secrets_are_sealed() {
        assert!(is_sealed(KEY));
        assert!(!is_sealed(b"/registry/configmaps/default/db"));
        assert!(!is_sealed(b"/registry/secretsx"));
    }
}
