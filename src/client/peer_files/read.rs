//! The reading side of peer files: a member reads or lists another member's shared
//! directory through the broker, sealing each request to the host's member key and opening
//! its sealed answer.

use super::*;

/// Who answered: the host's display name and member key, as the broker proved them.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerHost {
    pub host: String,
    pub host_member_pubkey: String,
}

/// A file read from a peer.
#[derive(Debug, Clone)]
pub struct PeerFile {
    pub host: PeerHost,
    pub content: Vec<u8>,
}

/// A listing of a peer's shared directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerListed {
    #[serde(flatten)]
    pub host: PeerHost,
    #[serde(flatten)]
    pub listing: PeerListing,
}

/// The content of a host's answer, opened, or its refusal as an error.
fn open_answer(
    client: &MeshClient,
    answer: PeerFilesAnswer,
    peer: &str,
    target: &str,
) -> Result<(PeerHost, Vec<u8>), ClientError> {
    let host = answer.host_name.clone().unwrap_or_else(|| peer.to_string());
    if let Some(error) = answer.error {
        return Err(ClientError::Broker {
            code: answer.code.unwrap_or_else(|| "host_error".into()),
            message: format!("{host}: {error}"),
        });
    }
    let (Some(sealed), Some(host_key)) = (answer.sealed, answer.host_pubkey) else {
        return Err(ClientError::Protocol(
            "the answer carries no sealed content".into(),
        ));
    };
    if host_key != target {
        return Err(ClientError::Protocol(format!(
            "the answer is sealed by {host_key}, not by the host asked ({target})"
        )));
    }
    let mine = client.speaking_keys()?;
    let plain = open_from(&mine, &host_key, &sealed).map_err(ClientError::Protocol)?;
    let host = PeerHost {
        host,
        host_member_pubkey: answer.host_member_pubkey.unwrap_or_default(),
    };
    Ok((host, plain))
}

/// How long a request waits for its host: `timeout`, else the broker's default.
fn host_wait(timeout: Option<Duration>) -> Duration {
    timeout.unwrap_or(Duration::from_millis(DEFAULT_PEER_FILES_TIMEOUT_MS))
}

impl MeshClient {
    /// The member key of the host `peer` names (a display name or a member key), from the
    /// member list: a request is sealed to it.
    async fn host_member_key(&self, peer: &str) -> Result<String, ClientError> {
        let members = self.list_members().await?;
        let named: Vec<&str> = members
            .iter()
            .filter(|m| m.pubkey == peer || m.display_name == peer)
            .map(|m| m.pubkey.as_str())
            .collect();
        match named.as_slice() {
            [key] => Ok((*key).to_string()),
            [] => Err(ClientError::Broker {
                code: "not_found".into(),
                message: format!(
                    "no member is called or has the member key \"{peer}\" (`claudemesh members` lists them)"
                ),
            }),
            _ => Err(ClientError::Broker {
                code: "ambiguous".into(),
                message: format!("\"{peer}\" names several members: give the member key"),
            }),
        }
    }

    /// The sealed part of `request` (its kind, path, and range or pattern) to the host whose
    /// member key is `host`, made fresh: a new nonce and the time now.
    fn seal_ask(
        &self,
        mut request: SealedPeerRequest,
        host: &str,
    ) -> Result<SealedPayload, ClientError> {
        request.host_pubkey = host.into();
        request.nonce = hex::encode(crate::crypto::random_bytes::<16>());
        request.timestamp = crate::protocol::time::now_ms();
        seal_request(&self.speaking_keys()?, &request).map_err(ClientError::Protocol)
    }

    /// Sends a read or listing request and returns the host's answer, relayed by the broker.
    /// Sends `request` to the host whose member key is `host` (`peer` as the user named it).
    async fn ask_host(
        &self,
        request: ClientMessage,
        wait: Duration,
        (peer, host): (&str, &str),
    ) -> Result<PeerFilesAnswer, ClientError> {
        // The broker times the request out; our own wait is a little longer so its answer wins.
        let answer = self
            .request_timeout(request, wait + Duration::from_secs(5))
            .await
            .map_err(|e| match e {
                // The broker names the host by the key we sent: say it as the user did.
                ClientError::Broker { code, message } => ClientError::Broker {
                    code,
                    message: message.replace(host, peer),
                },
                e => e,
            })?;
        match answer {
            ServerMessage::PeerFileResponseForward(r) => Ok(r.answer),
            ServerMessage::PeerDirResponseForward(r) => Ok(r.answer),
            other => Err(unexpected(other)),
        }
    }

    /// Reads `path` from `peer`'s shared directory (`peer`: a display name, or a member or
    /// session key), in chunks of [`MAX_PEER_CHUNK_BYTES`], each sealed to this reader and
    /// relayed by the broker, up to [`MAX_PEER_FILE_BYTES`]. `timeout` is per chunk.
    pub async fn read_peer_file(
        &self,
        peer: &str,
        path: &str,
        timeout: Option<Duration>,
    ) -> Result<PeerFile, ClientError> {
        let wait = host_wait(timeout);
        let host = self.host_member_key(peer).await?;
        let mut content = Vec::new();
        loop {
            let offset = content.len() as u64;
            let ask = SealedPeerRequest {
                kind: "read".into(),
                path: path.into(),
                offset: Some(offset),
                length: Some(MAX_PEER_CHUNK_BYTES),
                ..SealedPeerRequest::default()
            };
            let request = PeerFileRequest {
                target_pubkey: host.clone(),
                file_path: path.into(),
                offset: ask.offset,
                length: ask.length,
                timeout_ms: Some(wait.as_millis() as u64),
                sealed: Some(self.seal_ask(ask, &host)?),
            };
            let answer = self
                .ask_host(
                    ClientMessage::PeerFileRequest(Box::new(request)),
                    wait,
                    (peer, &host),
                )
                .await?;
            let size = answer.size;
            let (shown, chunk) = open_answer(self, answer, peer, &host)?;
            // A host that does not read in chunks sends the whole file at once.
            let Some(size) = size else {
                return Ok(PeerFile {
                    host: shown,
                    content: chunk,
                });
            };
            if size > MAX_PEER_FILE_BYTES {
                return Err(ClientError::Protocol(format!(
                    "the host says \"{path}\" is {size} bytes, over the {MAX_PEER_FILE_BYTES}-byte limit"
                )));
            }
            if offset == 0 {
                content.reserve_exact(size as usize);
            }
            content.extend_from_slice(&chunk);
            let have = content.len() as u64;
            if have == size {
                return Ok(PeerFile {
                    host: shown,
                    content,
                });
            }
            if chunk.is_empty() || have > size {
                return Err(ClientError::Broker {
                    code: "host_error".into(),
                    message: format!(
                        "\"{path}\" changed while it was read ({have} bytes read, the host now says {size}); read it again"
                    ),
                });
            }
        }
    }

    /// The names in `peer`'s shared directory under `path` (empty: its root), `depth` levels
    /// deep (default 2; with a `pattern`, 6), only those matching the glob `pattern` when
    /// given (e.g. `src/**/*.rs`).
    pub async fn list_peer_files(
        &self,
        peer: &str,
        path: &str,
        depth: Option<u32>,
        pattern: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<PeerListed, ClientError> {
        let wait = host_wait(timeout);
        let host = self.host_member_key(peer).await?;
        let ask = SealedPeerRequest {
            kind: "list".into(),
            path: path.into(),
            pattern: pattern.map(str::to_owned),
            ..SealedPeerRequest::default()
        };
        let request = PeerDirRequest {
            target_pubkey: host.clone(),
            dir_path: path.into(),
            pattern: ask.pattern.clone(),
            depth: depth.or(pattern.map(|_| MAX_LIST_DEPTH)),
            timeout_ms: Some(wait.as_millis() as u64),
            sealed: Some(self.seal_ask(ask, &host)?),
        };
        let answer = self
            .ask_host(
                ClientMessage::PeerDirRequest(Box::new(request)),
                wait,
                (peer, &host),
            )
            .await?;
        let (host, body) = open_answer(self, answer, peer, &host)?;
        let listing = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Protocol(format!("the host's listing: {e}")))?;
        Ok(PeerListed { host, listing })
    }
}
