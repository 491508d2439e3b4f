//! A mesh's settings (PROTOCOL.md §5.2; this broker): how group and broadcast bodies are
//! written.

use serde::{Deserialize, Serialize};

/// `mesh_settings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshSettings {
    pub self_editable: bool,
    pub group_bodies: String,
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
