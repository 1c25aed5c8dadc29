//! The `pod-template-hash`: a short, stable name for a pod template, which names a
//! Deployment's ReplicaSet (`<deployment>-<hash>`) and labels its pods, so two templates never
//! share a ReplicaSet and the same template always finds its own again.
//!
//! As Kubernetes: FNV-1a (32 bits) over the template (here its JSON, whose maps are sorted) and
//! the Deployment's `collisionCount`, its decimal digits spelled with the 27 characters that
//! cannot form words (`rand.SafeEncodeString`). Pure.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The label (and ReplicaSet selector term) carrying the hash.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

const SAFE_CHARACTERS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hash = Fnv1a::default();
    hash.write(&serde_json::to_vec(template).expect("a pod template always encodes"));
    if let Some(count) = collision_count {
        hash.write(&count.to_le_bytes());
    }
    hash.0
        .to_string()
        .bytes()
        .map(|digit| SAFE_CHARACTERS[usize::from(digit) % SAFE_CHARACTERS.len()] as char)
        .collect()
}

/// The 32-bit FNV-1a hash.
struct Fnv1a(u32);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0x811c_9dc5)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u32::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": { "labels": { "app": "kubia" } },
            "spec": { "containers": [{ "name": "c", "image": image }] }
        }))
        .unwrap()
    }

    #[test]
    fn fnv1a_matches_its_reference_values() {
        let mut empty = Fnv1a::default();
        empty.write(b"");
        assert_eq!(empty.0, 0x811c_9dc5);
        let mut a = Fnv1a::default();
        a.write(b"a");
        assert_eq!(a.0, 0xe40c_292c);
    }

    #[test]
    fn the_same_template_hashes_the_same_and_another_differently() {
        let v1 = template_hash(&template("kubia:v1"), None);
        assert_eq!(v1, template_hash(&template("kubia:v1"), None));
        assert_ne!(v1, template_hash(&template("kubia:v2"), None));
        assert_ne!(
            v1,
            template_hash(&template("kubia:v1"), Some(1)),
            "a collision moves it"
        );
        assert!(
            v1.len() <= 10 && v1.bytes().all(|b| SAFE_CHARACTERS.contains(&b)),
            "{v1}"
        );
    }
}
