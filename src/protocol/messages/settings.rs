//! A mesh's settings (PROTOCOL.md §5.2; this broker): how group and broadcast bodies are
//! written.

use serde::{Deserialize, Serialize};

/// `mesh_settings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshSettings {
    pub self_editable: bool,
    pub group_bodies: String,
    /// The owner's signature over the setting (PROTOCOL.md §5.2), when the owner chose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_bodies_signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_bodies_signed_at: Option<i64>,
}

/// The owner's signature over a `groupBodies` value: 128 hex over
/// `canonical::group_bodies(owner, value, signed_at)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupBodiesProof {
    pub signature: String,
    pub signed_at: i64,
}

impl GroupBodiesProof {
    /// Signs `value` with the owner key.
    pub fn sign(owner: &crate::crypto::SignKeyPair, value: GroupBodies, signed_at: i64) -> Self {
        let signed = crate::protocol::canonical::group_bodies(
            &owner.public_hex(),
            value.as_str(),
            signed_at,
        );
        GroupBodiesProof {
            signature: hex::encode(owner.sign(signed.as_bytes())),
            signed_at,
        }
    }

    /// The pair of optional wire fields that carry a proof, or none.
    pub fn into_wire(proof: Option<Self>) -> (Option<String>, Option<i64>) {
        proof.map(|p| (p.signature, p.signed_at)).unzip()
    }

    /// The proof carried by a pair of optional wire fields.
    pub fn from_wire(signature: Option<&String>, signed_at: Option<i64>) -> Option<Self> {
        Some(GroupBodiesProof {
            signature: signature?.clone(),
            signed_at: signed_at?,
        })
    }

    /// Whether the owner `owner_pubkey_hex` signed `value` with this.
    pub fn verifies(&self, owner_pubkey_hex: &str, value: &str) -> bool {
        let (Ok(owner), Ok(sig)) = (
            crate::protocol::Pubkey::parse(owner_pubkey_hex),
            crate::protocol::Signature::parse(&self.signature),
        ) else {
            return false;
        };
        let signed =
            crate::protocol::canonical::group_bodies(owner_pubkey_hex, value, self.signed_at);
        crate::crypto::verify(&sig.0, signed.as_bytes(), &owner.0)
    }
}

/// How clients write the bodies of group and broadcast messages in a mesh (PROTOCOL.md §4.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBodies {
    /// Secretbox under the mesh root key (`bodyVersion` 2): end-to-end encrypted.
    #[default]
    Sealed,
    /// Base64 plaintext (`bodyVersion` 1), which the original claudemesh clients read.
    Plain,
}

impl GroupBodies {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBodies::Sealed => "sealed",
            GroupBodies::Plain => "plain",
        }
    }

    pub fn parse(s: &str) -> Option<GroupBodies> {
        match s {
            "sealed" => Some(GroupBodies::Sealed),
            "plain" => Some(GroupBodies::Plain),
            _ => None,
        }
    }
}
