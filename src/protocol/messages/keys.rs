//! Root-key rotation (PROTOCOL.md §12.4): `rotate_key`, `get_keys`, `list_key_holders` and what
//! answers them. A sealed copy is `crypto_box_seal` of the 32 key bytes to one member's x25519
//! key (from its ed25519 member key), standard base64; the broker stores and forwards sealed
//! copies and the key's check value, never a key.

use serde::{Deserialize, Serialize};

use crate::crypto::{self, SignKeyPair};
use crate::protocol::{Pubkey, Signature, canonical};

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
#[serde(rename_all = "camelCase")]
pub struct RotateKey {
    pub epoch: u64,
    /// `HMAC-SHA256(new_key, "claudemesh-root-key-check")`, 64 hex.
    pub check: String,
    pub keys: Vec<SealedFor>,
    /// The key that signed [`canonical::key_rotation`]: the owner key, or the rotating admin's
    /// member key when the owner's signed admin list names it.
    pub signer: String,
    pub signed_at: i64,
    /// ed25519, 128 hex.
    pub signature: String,
}

impl RotateKey {
    /// The request for the rotation `proof` signed, with the sealed copies.
    pub fn signed(epoch: u64, keys: Vec<SealedFor>, proof: RotationProof) -> RotateKey {
        RotateKey {
            epoch,
            check: proof.check,
            keys,
            signer: proof.signer,
            signed_at: proof.signed_at,
            signature: proof.signature,
        }
    }
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
    /// Who made this epoch's key, signed; a client takes the key only when it verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<RotationProof>,
}

/// The signed statement of one rotation, as the broker stored it with the rotation: what the
/// rotator signed, and the owner's admin list that vouched for it when the signer is not the
/// owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationProof {
    pub check: String,
    pub signer: String,
    pub signed_at: i64,
    pub signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admins: Option<AdminList>,
}

/// The owner-signed list of admins whose rotations members accept (`admins`, `set_admins`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminList {
    pub version: u64,
    /// Member public keys, 64 lowercase hex, ascending.
    pub admins: Vec<String>,
    pub signed_at: i64,
    /// The owner key's ed25519 signature over [`canonical::admin_list`], 128 hex.
    pub signature: String,
}

/// Most admins one list may name.
pub const MAX_ADMINS: usize = 1_000;

fn signed_by(signer_hex: &str, signature_hex: &str, signed: &str) -> bool {
    let (Ok(signer), Ok(sig)) = (Pubkey::parse(signer_hex), Signature::parse(signature_hex)) else {
        return false;
    };
    crypto::verify(&sig.0, signed.as_bytes(), &signer.0)
}

impl AdminList {
    /// Signs a list for `mesh_id` with the owner key (the keys are sorted and deduplicated).
    pub fn sign(
        owner: &SignKeyPair,
        mesh_id: &str,
        version: u64,
        mut admins: Vec<String>,
        signed_at: i64,
    ) -> AdminList {
        admins.sort();
        admins.dedup();
        let signed = canonical::admin_list(mesh_id, version, signed_at, &admins);
        AdminList {
            version,
            admins,
            signed_at,
            signature: hex::encode(owner.sign(signed.as_bytes())),
        }
    }

    /// Whether the owner `owner_hex` signed this list for `mesh_id`, in its one canonical form
    /// (keys ascending, no repeats).
    pub fn verifies(&self, mesh_id: &str, owner_hex: &str) -> bool {
        // Keys ascending, each a well-formed member key: a `,` inside one entry could otherwise
        // sign the same string as two entries.
        let canonical_order = self.admins.windows(2).all(|w| w[0] < w[1])
            && self.admins.iter().all(|a| Pubkey::parse(a).is_ok());
        canonical_order
            && self.admins.len() <= MAX_ADMINS
            && signed_by(
                owner_hex,
                &self.signature,
                &canonical::admin_list(mesh_id, self.version, self.signed_at, &self.admins),
            )
    }

    pub fn names(&self, pubkey_hex: &str) -> bool {
        self.admins.iter().any(|a| a == pubkey_hex)
    }
}

impl RotationProof {
    /// Signs epoch `epoch` of `mesh_id` with key check `check`.
    pub fn sign(
        signer: &SignKeyPair,
        mesh_id: &str,
        epoch: u64,
        check: &str,
        signed_at: i64,
    ) -> Self {
        let signer_hex = signer.public_hex();
        let signed = canonical::key_rotation(mesh_id, epoch, check, &signer_hex, signed_at);
        RotationProof {
            check: check.to_owned(),
            signer: signer_hex,
            signed_at,
            signature: hex::encode(signer.sign(signed.as_bytes())),
            admins: None,
        }
    }

    /// Why epoch `epoch` of `mesh_id` must not be taken on this proof, `None` when it may: the
    /// signature verifies, and the signer is the owner `owner_hex` or an admin the owner's
    /// signed list names.
    pub fn refusal(&self, mesh_id: &str, epoch: u64, owner_hex: &str) -> Option<String> {
        let signed =
            canonical::key_rotation(mesh_id, epoch, &self.check, &self.signer, self.signed_at);
        if !signed_by(&self.signer, &self.signature, &signed) {
            return Some(format!(
                "the rotation to epoch {epoch} carries no valid signature"
            ));
        }
        if self.signer == owner_hex {
            return None;
        }
        match &self.admins {
            Some(list) if list.verifies(mesh_id, owner_hex) && list.names(&self.signer) => None,
            Some(list) if list.verifies(mesh_id, owner_hex) => Some(format!(
                "the rotation to epoch {epoch} was signed by {}, whom the owner's admin list (version {}) does not name",
                short(&self.signer),
                list.version
            )),
            Some(_) => Some(format!(
                "the admin list vouching for the rotation to epoch {epoch} is not signed by the owner"
            )),
            None => Some(format!(
                "the rotation to epoch {epoch} was signed by {}, who is not the owner, and no owner-signed admin list names it",
                short(&self.signer)
            )),
        }
    }
}

fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
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
