//! Peer files (issue 15 item 5): which presences share a directory, and the reads and
//! listings waiting for their hosts. Nothing here is stored: a share lasts as long as the
//! host's presence, and a request is relayed live or refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::shared_tools::ToolCalls;
use crate::protocol::messages::{PeerDirResponse, PeerFileResponse};

/// What a host sent back for a read or a listing.
#[derive(Debug)]
pub enum FilesAnswer {
    File(PeerFileResponse),
    Dir(PeerDirResponse),
    /// The answer was this many bytes, over the limit; it is not relayed.
    TooLarge(usize),
}

/// Reads and listings waiting for hosts, each caller with a bounded number at once.
pub type FileRequests = ToolCalls<FilesAnswer>;

/// One presence's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub read_only: bool,
}

/// The presences sharing a directory, by presence id.
#[derive(Default, Clone)]
pub struct Shares {
    inner: Arc<Mutex<HashMap<String, Share>>>,
}

impl Shares {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Share>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `presence_id` shares; forgets the shares of presences not in `present`
    /// (gone for good), so the map stays as small as the presences.
    pub fn share(&self, presence_id: &str, share: Share, present: impl Fn(&str) -> bool) {
        let mut shares = self.lock();
        shares.retain(|id, _| present(id));
        shares.insert(presence_id.to_string(), share);
    }

    pub fn unshare(&self, presence_id: &str) -> bool {
        self.lock().remove(presence_id).is_some()
    }

    pub fn get(&self, presence_id: &str) -> Option<Share> {
        self.lock().get(presence_id).copied()
    }
}
