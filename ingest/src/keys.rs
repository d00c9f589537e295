//! API keys. The store keeps only their hashes (invariant 6). A service's keys are derived
//! from the deployment secret, the service id, the slot and a generation counter, so
//! `GET …/keys` can show them again without any store holding them, and regenerating a key
//! is bumping its generation.

use model::service::KeySlot;

#[derive(Clone)]
pub struct Keys {
    derivation_key: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<secret>)")
    }
}

impl Keys {
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            derivation_key: blake3::derive_key("postino 2026 service api keys", secret),
        }
    }

    /// The key in `slot` of `service_id` at `generation`: 32 hex characters, like IO's.
    pub fn derive(&self, service_id: &str, slot: KeySlot, generation: u32) -> String {
        let slot = match slot {
            KeySlot::Primary => "primary",
            KeySlot::Secondary => "secondary",
        };
        let input = format!("{service_id}\n{slot}\n{generation}");
        blake3::keyed_hash(&self.derivation_key, input.as_bytes()).to_hex()[..32].to_string()
    }

    /// The key of the citizen hash that partitions the bus (see `FiscalCode::keyed_hash`).
    pub fn partition_key(secret: &[u8; 32]) -> [u8; 32] {
        blake3::derive_key("postino 2026 citizen partition key", secret)
    }

    /// What the store keeps of a key.
    pub fn hash(key: &str) -> String {
        blake3::hash(key.as_bytes()).to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_service_slot_generation_and_secret() {
        let k = Keys::new(&[7; 32]);
        let base = k.derive("s1", KeySlot::Primary, 0);
        assert_eq!(base.len(), 32);
        assert_eq!(base, k.derive("s1", KeySlot::Primary, 0));
        assert_ne!(base, k.derive("s2", KeySlot::Primary, 0));
        assert_ne!(base, k.derive("s1", KeySlot::Secondary, 0));
        assert_ne!(base, k.derive("s1", KeySlot::Primary, 1));
        assert_ne!(base, Keys::new(&[8; 32]).derive("s1", KeySlot::Primary, 0));
        assert_ne!(Keys::hash(&base), base);
    }
}
