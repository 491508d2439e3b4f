//! Typed calls for stats (issue 13, PROTOCOL.md §12.6).

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{MeshStatsEntry, ReportedStats};
use crate::protocol::{ClientMessage, ServerMessage};

impl MeshClient {
    /// What the broker counted on every connection of the mesh, with what each reported.
    pub async fn mesh_stats(&self) -> Result<Vec<MeshStatsEntry>, ClientError> {
        match self.request(ClientMessage::MeshStats {}).await? {
            ServerMessage::MeshStatsResult { peers } => Ok(peers),
            other => Err(unexpected(other)),
        }
    }

    /// Reports this client's own counts (no answer is waited for).
    pub fn report_stats(&self, stats: ReportedStats) -> Result<(), ClientError> {
        self.notify(ClientMessage::SetStats { stats })
    }
}
