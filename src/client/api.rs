//! Typed requests on top of [`MeshClient`]: messaging with end-to-end encryption, peers,
//! members, status. Encryption happens here, in the client; the broker only sees ciphertext.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::unexpected;
use super::{ClientError, Identity, KeyRing, MeshClient};
use crate::crypto::{self, SignKeyPair};
use crate::identity::MeshEntry;
use crate::protocol::messages::{
    Ack, ClientAck, MemberEntry, MessageStatusResult, PeerEntry, Push, SendMessage,
};
use crate::protocol::{ClientMessage, Pubkey, ServerMessage};

/// A resolved destination: the wire target spec and, for direct messages, the key to encrypt to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What the person typed (for reports).
    pub label: String,
    /// `<64 hex>`, `*` or `@group`.
    pub spec: String,
}

impl Target {
    pub fn is_direct(&self) -> bool {
        Pubkey::is_shape(&self.spec)
    }
}

/// A text sealed for one target, as `send` and `schedule` carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Standard base64 of the 24-byte nonce.
    pub nonce: String,
    /// Standard base64.
    pub ciphertext: String,
    /// `Some(2)` under the root key; `None` for crypto_box.
    pub body_version: Option<u32>,
    /// The root-key epoch of a bodyVersion 2 body (0 otherwise).
    pub key_epoch: u64,
}

/// An incoming message, decrypted.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub push: Push,
    /// The text, or why it could not be read.
    pub text: Result<String, String>,
}

impl MeshClient {
    /// The key this client speaks with: its session key, else its member key.
    pub fn speaking_keys(&self) -> Result<SignKeyPair, ClientError> {
        match &self.options.identity {
            Identity::Session(k) => Ok(k.clone()),
            Identity::Member => Ok(self.options.entry.member_keys()?),
        }
    }

    /// Seals `text` for one target: crypto_box from the speaking key to the target's key for
    /// a direct one, secretbox under the mesh root key (bodyVersion 2) for a group or
    /// broadcast — or, in a mesh whose owner chose plain group bodies for original clients,
    /// base64 plaintext (bodyVersion 1, no nonce). Messages and reminders are sealed alike.
    pub fn seal(&self, target: &Target, text: &str) -> Result<Sealed, ClientError> {
        if !target.is_direct() && self.plain_group_bodies() {
            return Ok(Sealed {
                nonce: String::new(),
                ciphertext: STANDARD.encode(text),
                body_version: Some(1),
                key_epoch: 0,
            });
        }
        let nonce: [u8; 24] = crypto::random_bytes();
        let mut key_epoch = 0;
        let (ciphertext, body_version) = if target.is_direct() {
            let to =
                Pubkey::parse(&target.spec).map_err(|e| ClientError::Protocol(e.to_string()))?;
            let their = crypto::ed25519_pk_to_x25519(&to.0)
                .map_err(|e| ClientError::Protocol(format!("{}: {e}", target.label)))?;
            let mine = self.speaking_keys()?.to_x25519();
            let ct = crypto::box_easy(text.as_bytes(), &nonce, &their, &mine.secret)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            (ct, None)
        } else {
            let ring = self.key_ring();
            key_epoch = ring.current_epoch();
            let root = ring.get(key_epoch).ok_or_else(|| {
                ClientError::from(crate::identity::IdentityError::NoRootKey(
                    self.options.entry.slug.clone(),
                ))
            })?;
            (
                crypto::secretbox_easy(text.as_bytes(), &nonce, &root),
                Some(2),
            )
        };
        Ok(Sealed {
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ciphertext),
            body_version,
            key_epoch,
        })
    }

    /// Encrypts and sends `text` to one target (see [`seal`](Self::seal)).
    pub async fn send_text(
        &self,
        target: &Target,
        text: &str,
        priority: &str,
        client_message_id: Option<String>,
    ) -> Result<Ack, ClientError> {
        self.send_excluding(target, text, priority, client_message_id, Vec::new())
            .await
    }

    /// Sends `text` to several targets, each recipient once: direct targets first, then each
    /// group or broadcast leaving out (`exclude`, PROTOCOL.md §4.1) whoever an earlier target
    /// of the list reached, so `alice,@backend` gives alice one copy. The results come in the
    /// order of `targets`; the first error that is not a refusal ends the sending.
    pub async fn send_each(
        &self,
        targets: &[Target],
        text: &str,
        priority: &str,
    ) -> Result<Vec<Ack>, ClientError> {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.sort_by_key(|&i| !targets[i].is_direct());
        let mut acks: Vec<(usize, Ack)> = Vec::with_capacity(targets.len());
        let mut reached: Vec<String> = Vec::new();
        for i in order {
            let target = &targets[i];
            let exclude = if target.is_direct() {
                Vec::new()
            } else {
                reached.clone()
            };
            let ack = self
                .send_excluding(target, text, priority, None, exclude)
                .await?;
            if ack.queued == Some(true) {
                reached.push(target.spec.clone());
            }
            acks.push((i, ack));
        }
        acks.sort_by_key(|(i, _)| *i);
        Ok(acks.into_iter().map(|(_, ack)| ack).collect())
    }

    async fn send_excluding(
        &self,
        target: &Target,
        text: &str,
        priority: &str,
        client_message_id: Option<String>,
        exclude: Vec<String>,
    ) -> Result<Ack, ClientError> {
        let mut fetched = false;
        loop {
            let sealed = self.seal(target, text)?;
            let id = crate::protocol::ids::new_id();
            let answer = match self
                .request(ClientMessage::Send(Box::new(SendMessage {
                    id: Some(id),
                    target_spec: target.spec.clone(),
                    priority: priority.to_string(),
                    nonce: sealed.nonce,
                    ciphertext: sealed.ciphertext,
                    body_version: sealed.body_version,
                    client_message_id: client_message_id.clone(),
                    exclude: exclude.clone(),
                    key_epoch: sealed.key_epoch,
                    ..Default::default()
                })))
                .await
            {
                // A recipient that refuses us (issue 13) is a refusal of this target, reported
                // like any other, not the end of a send to several.
                Err(ClientError::Broker { code, message })
                    if code == "blocked" || code == "messages_off" =>
                {
                    return Ok(Ack {
                        queued: Some(false),
                        error: Some(message),
                        ..Default::default()
                    });
                }
                other => other?,
            };
            let ack = match answer {
                ServerMessage::Ack(ack) => ack,
                other => return Err(unexpected(other)),
            };
            // The key was rotated since this client last heard: fetch it and seal again.
            let stale = ack
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("stale_key_epoch"));
            if !stale || fetched {
                return Ok(ack);
            }
            fetched = true;
            self.sync_keys().await?;
        }
    }

    /// Reads a push (see [`decrypt_push`]) with this client's keys.
    pub fn decrypt(&self, push: &Push) -> Result<String, String> {
        let session = match &self.options.identity {
            Identity::Session(k) => Some(k),
            Identity::Member => None,
        };
        decrypt_push(&self.options.entry, &self.key_ring(), session, push)
    }

    /// Decrypts a push into an [`Incoming`].
    pub fn open(&self, push: Push) -> Incoming {
        let text = self.decrypt(&push);
        Incoming { push, text }
    }

    /// Tells the broker a push was handled, so it is not delivered again.
    pub fn ack(&self, message_id: &str) -> Result<(), ClientError> {
        self.notify(ClientMessage::ClientAck(ClientAck {
            broker_message_id: Some(message_id.to_string()),
            client_message_id: None,
        }))
    }

    /// Asks for what is queued for this connection, held-back messages included; when this
    /// returns, those pushes are in the push stream. Returns how many were pushed.
    pub async fn drain(&self) -> Result<usize, ClientError> {
        Ok(self.drain_window().await?.0)
    }

    /// Like [`MeshClient::drain`], also saying whether more is queued than the broker pushes
    /// at once (a window): acknowledge what arrived and drain again until it says no more.
    pub async fn drain_window(&self) -> Result<(usize, bool), ClientError> {
        match self.request(ClientMessage::Drain {}).await? {
            ServerMessage::Drained { count, more } => Ok((count, more)),
            other => Err(unexpected(other)),
        }
    }

    /// Every peer (in `group`), by display name (all pages).
    pub async fn list_peers(&self, group: Option<String>) -> Result<Vec<PeerEntry>, ClientError> {
        self.all_pages(
            |cursor| ClientMessage::ListPeers {
                group: group.clone(),
                cursor,
                limit: None,
            },
            |answer| match answer {
                ServerMessage::PeersList { peers, next_cursor } => Ok((peers, next_cursor)),
                other => Err(unexpected(other)),
            },
        )
        .await
    }

    pub async fn list_members(&self) -> Result<Vec<MemberEntry>, ClientError> {
        match self.request(ClientMessage::ListMembers {}).await? {
            ServerMessage::MembersList { members } => Ok(members),
            other => Err(unexpected(other)),
        }
    }

    pub async fn message_status(&self, id: &str) -> Result<MessageStatusResult, ClientError> {
        match self
            .request(ClientMessage::MessageStatus {
                message_id: id.to_string(),
            })
            .await?
        {
            ServerMessage::MessageStatusResult(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Sends a request whose answer is a plain `ack`.
    pub async fn request_ack(&self, body: ClientMessage) -> Result<(), ClientError> {
        match self.request(body).await? {
            ServerMessage::Ack(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Resolves what a person typed as recipients (CLI.md): display names, pubkeys or unique
    /// hex prefixes of 8+, `@group`, `@all` or `*`, comma-separated, de-duplicated.
    pub async fn resolve_targets(&self, to: &str) -> Result<Vec<Target>, ClientError> {
        let wanted: Vec<&str> = to
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if wanted.is_empty() {
            return Err(ClientError::Broker {
                code: "invalid_argument".into(),
                message: "no recipient given".into(),
            });
        }
        let needs_lookup = wanted
            .iter()
            .any(|w| !(w.starts_with('@') || *w == "*" || Pubkey::is_shape(w)));
        let (peers, members) = if needs_lookup {
            (self.list_peers(None).await?, self.list_members().await?)
        } else {
            (Vec::new(), Vec::new())
        };
        let mut out: Vec<Target> = Vec::new();
        for w in wanted {
            let spec = resolve_one(w, &peers, &members).map_err(|message| ClientError::Broker {
                code: "unknown_target".into(),
                message,
            })?;
            if !out.iter().any(|t| t.spec == spec) {
                out.push(Target {
                    label: w.to_string(),
                    spec,
                });
            }
        }
        Ok(out)
    }
}

fn resolve_one(w: &str, peers: &[PeerEntry], members: &[MemberEntry]) -> Result<String, String> {
    match w {
        "*" | "@all" => return Ok("*".into()),
        g if g.starts_with('@') => return Ok(g.to_string()),
        k if Pubkey::is_shape(k) => return Ok(k.to_string()),
        _ => {}
    }
    let is_hex = w.len() >= 8 && w.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        let w = w.to_ascii_lowercase();
        let mut keys: Vec<&str> = members
            .iter()
            .map(|m| m.pubkey.as_str())
            .chain(peers.iter().map(|p| p.pubkey.as_str()))
            .filter(|k| k.starts_with(&w))
            .collect();
        keys.sort();
        keys.dedup();
        return match keys.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(format!("no peer or member has a key starting with {w}")),
            _ => Err(format!("{w} matches {} keys; give more of it", keys.len())),
        };
    }
    let by_member: Vec<&MemberEntry> = members.iter().filter(|m| m.display_name == w).collect();
    match by_member.as_slice() {
        [one] => return Ok(one.pubkey.clone()),
        [] => {}
        _ => {
            return Err(format!(
                "{} members are called \"{w}\"; use a key prefix instead",
                by_member.len()
            ));
        }
    }
    let mut by_peer: Vec<&str> = peers
        .iter()
        .filter(|p| p.display_name == w)
        .map(|p| p.pubkey.as_str())
        .collect();
    by_peer.dedup();
    match by_peer.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(format!("no peer or member is called \"{w}\"")),
        _ => Err(format!(
            "{} peers are called \"{w}\"; use a key prefix instead",
            by_peer.len()
        )),
    }
}

/// Reads a push: crypto_box for direct messages (trying the session key, then the member
/// key), secretbox under the root key of the push's `keyEpoch` for bodyVersion 2, base64
/// plaintext for version 1. Needs no connection: what a member's saved keys can open.
pub fn decrypt_push(
    entry: &MeshEntry,
    ring: &KeyRing,
    session: Option<&SignKeyPair>,
    push: &Push,
) -> Result<String, String> {
    let nonce = STANDARD.decode(&push.nonce).unwrap_or_default();
    let body = STANDARD
        .decode(&push.ciphertext)
        .map_err(|_| "ciphertext is not base64".to_string())?;
    // No nonce means no encryption: bodyVersion 1 plaintext, even to one pubkey (reminders).
    let direct = !nonce.is_empty()
        && (push.target_spec.as_deref().is_some_and(Pubkey::is_shape)
            || (push.target_spec.is_none() && push.body_version != Some(2)));
    let text = if direct {
        let nonce: [u8; 24] = nonce
            .try_into()
            .map_err(|_| "nonce must be 24 bytes".to_string())?;
        let sender = Pubkey::parse(&push.sender_pubkey).map_err(|e| format!("sender key: {e}"))?;
        let their = crypto::ed25519_pk_to_x25519(&sender.0).map_err(|e| e.to_string())?;
        let mut keys: Vec<SignKeyPair> = session.into_iter().cloned().collect();
        keys.push(entry.member_keys().map_err(|e| e.to_string())?);
        keys.iter()
            .find_map(|k| crypto::box_open_easy(&body, &nonce, &their, &k.to_x25519().secret).ok())
            .ok_or_else(|| "cannot decrypt: not addressed to our keys, or tampered".to_string())?
    } else if push.body_version == Some(2) {
        let nonce: [u8; 24] = nonce
            .try_into()
            .map_err(|_| "nonce must be 24 bytes".to_string())?;
        let root = match ring.get(push.key_epoch) {
            Some(k) => k,
            None if ring.current_epoch() == 0 && push.key_epoch == 0 => {
                entry.root_key().map_err(|e| e.to_string())?
            }
            None => return Err(super::missing_epoch(push.key_epoch)),
        };
        crypto::secretbox_open_easy(&body, &nonce, &root).map_err(|e| e.to_string())?
    } else {
        body
    };
    String::from_utf8(text).map_err(|_| "the message is not UTF-8 text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, key_byte: char) -> MemberEntry {
        MemberEntry {
            member_id: format!("id-{name}"),
            pubkey: key_byte.to_string().repeat(64),
            display_name: name.into(),
            role: "member".into(),
            joined_at: String::new(),
            online: false,
            last_seen_at: None,
            groups: Vec::new(),
        }
    }

    fn peer(name: &str, key_byte: char) -> PeerEntry {
        PeerEntry {
            pubkey: key_byte.to_string().repeat(64),
            display_name: name.into(),
            ..Default::default()
        }
    }

    /// CLI.md's recipients: `*`, `@all`, `@group` and full keys as given; a unique key prefix of
    /// 8+ hex characters (any case); a member's display name, else a live peer's; anything
    /// ambiguous or unknown refused with what to do.
    #[test]
    fn a_recipient_resolves_to_one_key_or_says_why_not() {
        let key = |c: char| c.to_string().repeat(64);
        let members = [
            member("alice", 'a'),
            member("bob", 'b'),
            member("twin", 'c'),
            member("twin", 'd'),
        ];
        // Sessions show their own names; a member's name wins over a session's.
        let peers = [
            peer("reviewer", 'e'),
            peer("bob", 'f'),
            peer("helper", '1'),
            peer("helper", '2'),
        ];
        let resolve = |w: &str| resolve_one(w, &peers, &members);
        assert_eq!(resolve("*"), Ok("*".into()));
        assert_eq!(resolve("@all"), Ok("*".into()));
        assert_eq!(resolve("@backend"), Ok("@backend".into()));
        assert_eq!(
            resolve(&key('9')),
            Ok(key('9')),
            "a full key is taken as given"
        );
        assert_eq!(resolve("alice"), Ok(key('a')));
        assert_eq!(resolve("bob"), Ok(key('b')));
        assert_eq!(resolve("reviewer"), Ok(key('e')));
        assert_eq!(resolve("EEEEEEEE"), Ok(key('e')), "a prefix in capitals");
        assert_eq!(resolve("aaaaaaaa"), Ok(key('a')));
        let refused = |w: &str, says: &str| {
            let why = resolve(w).expect_err(w);
            assert!(why.contains(says), "{w}: {why}");
        };
        refused(
            "twin",
            "2 members are called \"twin\"; use a key prefix instead",
        );
        refused(
            "helper",
            "2 peers are called \"helper\"; use a key prefix instead",
        );
        refused("carol", "no peer or member is called \"carol\"");
        refused(
            "77777777",
            "no peer or member has a key starting with 77777777",
        );
        // Two keys that share a prefix.
        let mut members = [member("x", 'a'), member("y", 'a')];
        members[1].pubkey = format!("{}b", "a".repeat(63));
        let why = resolve_one("aaaaaaaa", &[], &members).expect_err("ambiguous");
        assert!(why.contains("matches 2 keys; give more of it"), "{why}");
        // One member seen again as a live peer is one key, not two.
        let both = [peer("zed", '3'), peer("zed", '3')];
        assert_eq!(resolve_one("zed", &both, &[]), Ok(key('3')));
        assert_eq!(
            resolve_one("33333333", &both, &[member("zed", '3')]),
            Ok(key('3'))
        );
    }

    /// A push as a broker sends it; `target: None` is the original broker's (no `targetSpec`).
    fn push(from: &SignKeyPair, target: Option<&str>, version: Option<u32>) -> Push {
        Push {
            sender_pubkey: from.public_hex(),
            target_spec: target.map(str::to_string),
            body_version: version,
            ..Default::default()
        }
    }

    /// `text` sealed with crypto_box from `from` to `to`, into `push`.
    fn boxed(mut push: Push, from: &SignKeyPair, to: &SignKeyPair, text: &str) -> Push {
        let nonce: [u8; 24] = crypto::random_bytes();
        let their = to.to_x25519().public;
        let ct = crypto::box_easy(text.as_bytes(), &nonce, &their, &from.to_x25519().secret)
            .expect("sealed");
        push.nonce = STANDARD.encode(nonce);
        push.ciphertext = STANDARD.encode(ct);
        push
    }

    /// `text` under the root key (bodyVersion 2), into `push`.
    fn under_root(mut push: Push, root: &[u8; 32], epoch: u64, text: &str) -> Push {
        let nonce: [u8; 24] = crypto::random_bytes();
        push.nonce = STANDARD.encode(nonce);
        push.ciphertext = STANDARD.encode(crypto::secretbox_easy(text.as_bytes(), &nonce, root));
        push.key_epoch = epoch;
        push
    }

    /// What a push is: a direct message (crypto_box, to the session key or else the member
    /// key), a group body under the root key of its epoch (bodyVersion 2), or plaintext when
    /// it has no nonce — with or without the `targetSpec` the original broker leaves out.
    #[test]
    fn a_push_is_opened_by_what_it_is_not_by_where_it_came_from() {
        let (alice, bob, session) = (
            SignKeyPair::generate(),
            SignKeyPair::generate(),
            SignKeyPair::generate(),
        );
        let root: [u8; 32] = crypto::random_bytes();
        let entry = crate::identity::test_entry(&bob, &root, None);
        let ring = KeyRing::from_entry(&entry);
        let open =
            |p: &Push, session: Option<&SignKeyPair>| decrypt_push(&entry, &ring, session, p);
        let to_bob = bob.public_hex();

        // Direct, to the member key: with a target, and without one (the original broker).
        for target in [Some(to_bob.as_str()), None] {
            let p = boxed(push(&alice, target, None), &alice, &bob, "hi bob");
            assert_eq!(open(&p, None), Ok("hi bob".into()), "{target:?}");
            assert_eq!(
                open(&p, Some(&session)),
                Ok("hi bob".into()),
                "member key after session"
            );
        }
        // Direct, to the session key.
        let p = boxed(
            push(&alice, Some(&session.public_hex()), None),
            &alice,
            &session,
            "hi",
        );
        assert_eq!(open(&p, Some(&session)), Ok("hi".into()));
        assert!(open(&p, None).is_err(), "only the session key opens it");
        // A group body, with a target and without one.
        for target in [Some("@ops"), Some("*"), None] {
            let p = under_root(push(&alice, target, Some(2)), &root, 0, "to all");
            assert_eq!(open(&p, None), Ok("to all".into()), "{target:?}");
        }
        // Plaintext (no nonce), to one key as reminders are, and to everyone.
        for target in [Some(to_bob.as_str()), Some("*"), None] {
            let mut p = push(&alice, target, Some(1));
            p.ciphertext = STANDARD.encode("plain");
            assert_eq!(open(&p, None), Ok("plain".into()), "{target:?}");
        }
        // A body of an epoch this member does not hold says so.
        let p = under_root(push(&alice, Some("*"), Some(2)), &[7; 32], 3, "later");
        assert_eq!(open(&p, None), Err(super::super::missing_epoch(3)));
        // A ring that lacks epoch 0 (nothing rotated yet) falls back to the saved root key …
        let empty = KeyRing::default();
        let p = under_root(push(&alice, Some("*"), Some(2)), &root, 0, "first key");
        assert_eq!(
            decrypt_push(&entry, &empty, None, &p),
            Ok("first key".into())
        );
        // … but not for another epoch.
        let p = under_root(push(&alice, Some("*"), Some(2)), &root, 1, "second key");
        assert_eq!(
            decrypt_push(&entry, &empty, None, &p),
            Err(super::super::missing_epoch(1))
        );
        // A tampered body is refused, not shown.
        let mut p = boxed(push(&alice, Some(&to_bob), None), &alice, &bob, "hi bob");
        p.ciphertext = STANDARD.encode(b"not what was sealed at all, by anyone");
        assert!(open(&p, None).is_err());
    }

    /// A name made of hex digits (`cafe`) is a name; only 8 or more hex characters are read as
    /// a key prefix.
    #[test]
    fn short_hex_names_are_names_and_long_prefixes_are_keys() {
        let members = [member("cafe", 'a'), member("bob", 'b')];
        assert_eq!(resolve_one("cafe", &[], &members), Ok("a".repeat(64)));
        assert_eq!(resolve_one("bbbbbbbb", &[], &members), Ok("b".repeat(64)));
        assert!(resolve_one("bbbb", &[], &members).is_err());
    }
}
