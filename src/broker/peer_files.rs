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

/// Requests one reader may have waiting for one host at once (16 in all: `MAX_CALLS_IN_FLIGHT`).
pub const MAX_REQUESTS_PER_HOST: usize = 4;

/// (mesh id, reader member id, host presence id).
type Pair = (String, String, String);

/// The presences sharing a directory, by presence id, and the requests waiting per reader
/// and host.
#[derive(Default, Clone)]
pub struct Shares {
    inner: Arc<Mutex<HashMap<String, Share>>>,
    pairs: Arc<Mutex<HashMap<Pair, usize>>>,
}

/// One request's place between a reader and a host; dropping it frees the place.
pub struct PairPlace {
    pairs: Arc<Mutex<HashMap<Pair, usize>>>,
    pair: Pair,
}

impl Drop for PairPlace {
    fn drop(&mut self) {
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = pairs.get_mut(&self.pair) {
            *n -= 1;
            if *n == 0 {
                pairs.remove(&self.pair);
            }
        }
    }
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

    /// A place for one more request of `reader` (member id) to `host` (presence id); `None`
    /// when it already has [`MAX_REQUESTS_PER_HOST`] waiting there.
    pub fn take_pair(&self, mesh_id: &str, reader: &str, host: &str) -> Option<PairPlace> {
        let pair = (mesh_id.to_string(), reader.to_string(), host.to_string());
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        let n = pairs.entry(pair.clone()).or_insert(0);
        if *n >= MAX_REQUESTS_PER_HOST {
            return None;
        }
        *n += 1;
        Some(PairPlace {
            pairs: self.pairs.clone(),
            pair,
        })
    }

    pub fn get(&self, presence_id: &str) -> Option<Share> {
        self.lock().get(presence_id).copied()
    }
}
