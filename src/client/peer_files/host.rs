//! The hosting side: requests forwarded by the broker, their seal and freshness checked, and
//! answered from the shared directory, sealed to the reader.

use super::*;

/// A request forwarded to this host.
#[derive(Debug, Clone)]
pub enum Forwarded {
    File(PeerFileRequestForward),
    Dir(PeerDirRequestForward),
}

impl Forwarded {
    /// The forward in `frame`, if it is one.
    pub fn from_push(frame: &ServerMessage) -> Option<Forwarded> {
        match frame {
            ServerMessage::PeerFileRequestForward(f) => Some(Forwarded::File((**f).clone())),
            ServerMessage::PeerDirRequestForward(f) => Some(Forwarded::Dir((**f).clone())),
            _ => None,
        }
    }

    fn requester(&self) -> &Requester {
        match self {
            Forwarded::File(f) => &f.requester,
            Forwarded::Dir(f) => &f.requester,
        }
    }

    fn sealed(&self) -> Option<&SealedPayload> {
        match self {
            Forwarded::File(f) => f.sealed.as_ref(),
            Forwarded::Dir(f) => f.sealed.as_ref(),
        }
    }
}

/// Seals what a reader asks (`request`) from its key `mine` to the host's member key.
pub fn seal_request(
    mine: &crate::crypto::SignKeyPair,
    request: &SealedPeerRequest,
) -> Result<SealedPayload, String> {
    let plain = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    seal_to(mine, &request.host_pubkey, &plain)
}

/// Nonces of sealed requests seen within the skew window, oldest first (bounded).
#[derive(Default)]
struct SeenNonces {
    set: std::collections::HashSet<String>,
    order: std::collections::VecDeque<(i64, String)>,
}

/// Nonces remembered at most; beyond, the oldest go (they are stale within two minutes).
const MAX_SEEN_NONCES: usize = 4096;

impl SeenNonces {
    /// False when `nonce` was seen already.
    fn fresh(&mut self, nonce: &str, now: i64) -> bool {
        while let Some((at, _)) = self.order.front() {
            if *at >= now - 2 * MAX_PEER_REQUEST_SKEW_MS && self.order.len() < MAX_SEEN_NONCES {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        if !self.set.insert(nonce.to_string()) {
            return false;
        }
        self.order.push_back((now, nonce.to_string()));
        true
    }
}

/// What one request came to, for the host's log (metadata only, never content).
#[derive(Debug, Clone)]
pub struct Served {
    pub requester_name: String,
    pub requester_member_id: String,
    /// `read` or `list`.
    pub verb: &'static str,
    pub path: String,
    /// Bytes sent (a read) or names listed, or the refusal.
    pub outcome: Result<usize, Refused>,
}

impl std::fmt::Display for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and paths come from peers: no control character reaches a terminal or a log.
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect()
        };
        let who = clean(&format!(
            "{} ({})",
            self.requester_name, self.requester_member_id
        ));
        let path = if self.path.is_empty() {
            ".".to_string()
        } else {
            clean(&self.path)
        };
        match (&self.outcome, self.verb) {
            (Ok(n), "read") => write!(f, "peer-files: {who} read \"{path}\" ({n} bytes)"),
            (Ok(n), _) => write!(f, "peer-files: {who} listed \"{path}\" ({n} names)"),
            (Err(r), verb) => write!(
                f,
                "peer-files: refused {verb} of \"{path}\" by {who}: {} ({})",
                clean(&r.message),
                r.code
            ),
        }
    }
}

/// A shared directory answering the requests the broker forwards (used by `share-dir` and
/// by the MCP server under `launch --share-dir`).
pub struct FileHost {
    dir: Arc<SharedDir>,
    busy: Arc<tokio::sync::Semaphore>,
    seen: std::sync::Mutex<SeenNonces>,
}

impl FileHost {
    pub fn new(dir: SharedDir) -> FileHost {
        FileHost {
            dir: Arc::new(dir),
            busy: Arc::new(tokio::sync::Semaphore::new(MAX_HOSTED_REQUESTS)),
            seen: Default::default(),
        }
    }

    pub fn dir(&self) -> &SharedDir {
        &self.dir
    }

    /// Tells the broker this connection shares (again after a reconnect).
    pub async fn announce(&self, client: &MeshClient) -> Result<(), ClientError> {
        client
            .request_ack(ClientMessage::PeerFilesShare(PeerFilesShare {
                read_only: self.dir.read_only,
            }))
            .await
    }

    /// Checks that the reader the broker named sealed this very request to this host, lately
    /// and once: `unverified` otherwise.
    fn verify(
        &self,
        client: &MeshClient,
        forward: &Forwarded,
        verb: &str,
        path: &str,
    ) -> Result<(), Refused> {
        let unverified =
            |why: &str| refused("unverified", format!("the request is refused: {why}"));
        let sealed = forward.sealed().ok_or_else(|| {
            unverified("it is not sealed by its reader (claudemesh 0.2 or later seals it)")
        })?;
        let entry = client.entry();
        let mine = entry
            .member_keys()
            .map_err(|e| refused("host_error", e.to_string()))?;
        let plain =
            open_from(&mine, &forward.requester().requester_pubkey, sealed).map_err(|_| {
                unverified("it does not open as sealed by the reader's key to this host")
            })?;
        let asked: SealedPeerRequest = serde_json::from_slice(&plain)
            .map_err(|e| unverified(&format!("its sealed part is not a request ({e})")))?;
        let relayed = match forward {
            Forwarded::File(f) => (f.offset, f.length, None),
            Forwarded::Dir(f) => (None, None, f.pattern.as_deref()),
        };
        if asked.kind != verb
            || asked.path != path
            || (asked.offset, asked.length, asked.pattern.as_deref()) != relayed
        {
            return Err(unverified(
                "the sealed path, kind, range or pattern differs from the one relayed",
            ));
        }
        if asked.host_pubkey != entry.member_pubkey {
            return Err(unverified("it was sealed for another host"));
        }
        let now = crate::protocol::time::now_ms();
        if (now - asked.timestamp).abs() > MAX_PEER_REQUEST_SKEW_MS {
            return Err(unverified(
                "its timestamp is over a minute off (stale or replayed)",
            ));
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.fresh(&asked.nonce, now) {
            return Err(unverified("it was answered once already (replayed)"));
        }
        Ok(())
    }

    /// Answers one forwarded request: reads or lists on a blocking thread, seals the result to
    /// the requester's key and sends it back.
    pub async fn answer(&self, client: &MeshClient, forward: Forwarded) -> Served {
        let requester = forward.requester().clone();
        let (verb, path) = match &forward {
            Forwarded::File(f) => ("read", f.file_path.clone()),
            Forwarded::Dir(f) => ("list", f.dir_path.clone()),
        };
        let work = {
            let dir = self.dir.clone();
            let forward = forward.clone();
            // The body, what the host's log counts (bytes or names), and a chunk's file size.
            move || -> Result<(Vec<u8>, usize, Option<u64>), Refused> {
                match forward {
                    Forwarded::File(f) if f.offset.is_none() && f.length.is_none() => {
                        dir.read(&f.file_path).map(|c| {
                            let n = c.len();
                            (c, n, None)
                        })
                    }
                    Forwarded::File(f) => {
                        let length = f.length.unwrap_or(MAX_PEER_CHUNK_BYTES);
                        let (c, size) =
                            dir.read_range(&f.file_path, f.offset.unwrap_or(0), length)?;
                        let n = c.len();
                        Ok((c, n, Some(size)))
                    }
                    Forwarded::Dir(f) => {
                        let listing =
                            dir.list_matching(&f.dir_path, f.depth, f.pattern.as_deref())?;
                        let n = listing.entries.len();
                        serde_json::to_vec(&listing)
                            .map(|body| (body, n, None))
                            .map_err(|e| refused("host_error", e.to_string()))
                    }
                }
            }
        };
        let verified = self.verify(client, &forward, verb, &path);
        let outcome = match self.busy.clone().try_acquire_owned() {
            _ if verified.is_err() => verified.map(|()| (Vec::new(), 0, None)),
            Err(_) => Err(refused(
                "host_busy",
                format!("the host is answering {MAX_HOSTED_REQUESTS} requests; try again"),
            )),
            // The permit is released after the timeout even if the thread stays stuck.
            Ok(_permit) => {
                match tokio::time::timeout(HOST_WORK_TIMEOUT, tokio::task::spawn_blocking(work))
                    .await
                {
                    Ok(done) => done.unwrap_or_else(|e| Err(refused("host_error", e.to_string()))),
                    Err(_) => Err(refused(
                        "timeout",
                        format!(
                            "\"{path}\" took the host over {} s (a slow or hung file system)",
                            HOST_WORK_TIMEOUT.as_secs()
                        ),
                    )),
                }
            }
        };
        let mut answer = PeerFilesAnswer::default();
        let counted = match outcome {
            Ok((body, n, size)) => {
                answer.size = size;
                // Sealed with the member key, the one readers target.
                let sealed = client
                    .entry()
                    .member_keys()
                    .map_err(|e| e.to_string())
                    .and_then(|mine| seal_to(&mine, &requester.requester_pubkey, &body));
                match sealed {
                    Ok(sealed) => {
                        answer.sealed = Some(sealed);
                        Ok(n)
                    }
                    Err(e) => Err(refused(
                        "host_error",
                        format!("cannot seal the answer: {e}"),
                    )),
                }
            }
            Err(r) => Err(r),
        };
        // An answer over the broker's limit would be dropped (or end the connection): say so.
        let counted = match counted {
            Ok(_) if answer.wire_bytes() > MAX_PEER_FILES_ANSWER_BYTES => {
                answer.sealed = None;
                Err(refused(
                    "too_large",
                    format!(
                        "the answer for \"{path}\" is over {MAX_PEER_FILES_ANSWER_BYTES} bytes; list a subdirectory or less depth"
                    ),
                ))
            }
            other => other,
        };
        if let Err(r) = &counted {
            answer.size = None;
            answer.error = Some(r.message.clone());
            answer.code = Some(r.code.to_string());
        }
        let frame = match forward {
            Forwarded::File(f) => {
                answer.request_id = Some(f.request_id);
                ClientMessage::PeerFileResponse(Box::new(PeerFileResponse {
                    file_path: f.file_path,
                    answer,
                }))
            }
            Forwarded::Dir(f) => {
                answer.request_id = Some(f.request_id);
                ClientMessage::PeerDirResponse(Box::new(PeerDirResponse {
                    dir_path: f.dir_path,
                    answer,
                }))
            }
        };
        let sent = client.notify(frame);
        Served {
            requester_name: requester.requester_name,
            requester_member_id: requester.requester_member_id,
            verb,
            path,
            outcome: match sent {
                Ok(()) => counted,
                Err(e) => Err(refused("host_error", e.to_string())),
            },
        }
    }
}
