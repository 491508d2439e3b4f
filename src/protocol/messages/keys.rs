//! Root-key rotation (PROTOCOL.md §12.4): `rotate_key`, `get_keys`, `list_key_holders` and what
//! answers them. A sealed copy is `crypto_box_seal` of the 32 key bytes to one member's x25519
//! key (from its ed25519 member key), standard base64; the broker stores and forwards sealed
//! copies and the key's check value, never a key.

use serde::{Deserialize, Serialize};

/// One member's sealed copy of a new root key, in `rotate_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedFor {
    pub member_id: String,
    pub sealed: String,
}

/// `rotate_key`: the owner's or an admin's client starts key epoch `epoch` (the current one
/// plus 1) with a key it made, sealed to every member that must hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateKey {
    pub epoch: u64,
    /// `HMAC-SHA256(new_key, "claudemesh-root-key-check")`, 64 hex.
    pub check: String,
    pub keys: Vec<SealedFor>,
}

/// `key_rotated` (the answer to `rotate_key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotateKeyOk {
    pub epoch: u64,
    /// How many members got a sealed copy.
    pub members: usize,
    /// Unused invites revoked with the rotation: their links carry the old key.
    pub invites_revoked: usize,
}

/// One epoch's sealed copy for the member asking (`keys`, and the `key_rotated` event's data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochKey {
    pub epoch: u64,
    pub sealed: String,
}

/// A member that must hold the mesh's keys (`key_holders`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyHolder {
    pub member_id: String,
    pub pubkey: String,
    pub display_name: String,
}

/// `0` is left out of frames, so messages of a mesh never rotated look as they always did.
pub fn is_epoch_zero(epoch: &u64) -> bool {
    *epoch == 0
}
