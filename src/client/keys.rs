//! The mesh root keys this client holds, by epoch (PROTOCOL.md §12.4), and rotation. A client
//! starts from its config's keys, takes new ones from `key_rotated` events and `get_keys`
//! (sealed to its member key), keeps them in memory and merges them into its config file, so
//! several processes of one member never lose each other's keys.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{ClientError, MeshClient, unexpected};
use crate::crypto::{self, SignKeyPair};
use crate::identity::{ConfigDir, IdentityError, MeshEntry, root_key_check};
use crate::protocol::messages::{
    AdminList, EpochKey, Push, RotateKey, RotateKeyOk, RotationProof, SealedFor,
};
use crate::protocol::{ClientMessage, Pubkey, ServerMessage, time};

/// How often a rotation is tried again when membership or the epoch moved under it.
const ROTATION_ATTEMPTS: usize = 3;

/// Root keys by epoch, and which one is current.
#[derive(Clone, Default)]
pub struct KeyRing {
    current: u64,
    keys: BTreeMap<u64, [u8; 32]>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current)
            .field("epochs", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRing {
    /// The keys a config entry holds.
    pub fn from_entry(entry: &MeshEntry) -> KeyRing {
        let mut keys = BTreeMap::new();
        if let Ok(k) = entry.root_key() {
            keys.insert(entry.key_epoch, k);
        }
        for old in &entry.old_root_keys {
            if let Some(k) = entry.root_key_at(old.epoch) {
                keys.insert(old.epoch, k);
            }
        }
        KeyRing {
            current: entry.key_epoch,
            keys,
        }
    }

    /// The current epoch, as far as this client knows.
    pub fn current_epoch(&self) -> u64 {
        self.current
    }

    /// The key of `epoch`, if held.
    pub fn get(&self, epoch: u64) -> Option<[u8; 32]> {
        self.keys.get(&epoch).copied()
    }

    /// Every key held, oldest epoch first.
    pub fn all(&self) -> impl Iterator<Item = (u64, [u8; 32])> + '_ {
        self.keys.iter().map(|(epoch, key)| (*epoch, *key))
    }

    /// Sets the key of `epoch` (a sealed copy replaces a different key held for it).
    fn set_sealed(&mut self, epoch: u64, key: [u8; 32]) {
        self.keys.insert(epoch, key);
        self.current = self.current.max(epoch);
    }
}

/// Why a group body cannot be opened with these keys.
pub fn missing_epoch(epoch: u64) -> String {
    format!("cannot decrypt: sealed under key epoch {epoch}, which this member does not hold")
}

/// The key ring a client and its connection task share, and what they need to take in a
/// sealed copy: the member key it is sealed to and the config to save it in.
#[derive(Clone)]
pub(crate) struct Keeper {
    ring: Arc<RwLock<KeyRing>>,
    member: Option<SignKeyPair>,
    /// The owner key on the machine that created the mesh: it signs rotations and admin lists.
    owner: Option<SignKeyPair>,
    /// The owner's public key (checked against the invite link at join): whose word on keys
    /// this client takes.
    owner_pubkey: String,
    /// The newest admin list version seen (kept in the config too).
    admins_seen: Arc<AtomicU64>,
    mesh_id: String,
    member_id: String,
    config_dir: Option<ConfigDir>,
}

impl Keeper {
    pub(crate) fn new(entry: &MeshEntry, config_dir: Option<ConfigDir>) -> Keeper {
        Keeper {
            ring: Arc::new(RwLock::new(KeyRing::from_entry(entry))),
            member: entry.member_keys().ok(),
            owner: entry.owner_keys().and_then(Result::ok),
            owner_pubkey: entry.owner_pubkey.clone(),
            admins_seen: Arc::new(AtomicU64::new(entry.admin_list_version)),
            mesh_id: entry.mesh_id.clone(),
            member_id: entry.member_id.clone(),
            config_dir,
        }
    }

    pub(crate) fn ring(&self) -> KeyRing {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Opens a sealed copy of epoch `epoch`'s key and keeps it, when its rotation was signed
    /// by the owner or an admin the owner's signed list names and the key matches what they
    /// signed: the broker alone cannot hand out a key. A sealed copy is what a rotation handed
    /// this very member, so it wins over a different key held for that epoch (which came from
    /// an invite link: a link could name the old key as a later epoch). `current` is the
    /// admin list the broker sent with the copy (a `keys` answer's), noted by the caller
    /// (and checked here again to be the owner's); `None` when none came (a `key_rotated`
    /// event).
    pub(crate) fn absorb(
        &self,
        copy: &EpochKey,
        current: Option<&AdminList>,
    ) -> Result<(), String> {
        let member = self
            .member
            .as_ref()
            .ok_or("this member's key is unusable")?;
        let proof = copy.proof.as_ref().ok_or_else(|| {
            format!(
                "the key of epoch {} comes with no signature from the owner or an admin",
                copy.epoch
            )
        })?;
        if let Some(why) = proof.refusal(&self.mesh_id, copy.epoch, &self.owner_pubkey) {
            return Err(why);
        }
        // A key that would become the one this member sends under is not taken on an admin
        // list older than one it has seen: that list may name an admin the owner removed since.
        // Unless a list at least as new as any seen still names the signer: the rotation was
        // vouched for when the broker stored it (before the newer list), and its signer is an
        // admin by the owner's newest word this member has, so taking it trusts nobody more.
        let seen = self.admins_seen.load(Ordering::Relaxed);
        if let Some(list) = &proof.admins
            && copy.epoch > self.ring().current_epoch()
            && list.version < seen
            && !current.is_some_and(|l| {
                l.version >= seen
                    && l.names(&proof.signer)
                    && l.verifies(&self.mesh_id, &self.owner_pubkey)
            })
        {
            return Err(format!(
                "the rotation to epoch {} is vouched for by admin list version {}, older than version {seen} this member has seen, and the broker sent no owner-signed list at least that new naming its signer",
                copy.epoch, list.version
            ));
        }
        let sealed = STANDARD
            .decode(&copy.sealed)
            .map_err(|_| "the sealed key is not base64")?;
        let key: [u8; 32] = crypto::seal_open(&sealed, &member.to_x25519())
            .map_err(|_| {
                format!(
                    "the key of epoch {} is not sealed to this member",
                    copy.epoch
                )
            })?
            .try_into()
            .map_err(|_| "a sealed root key must be 32 bytes")?;
        if root_key_check(&key) != proof.check {
            return Err(format!(
                "the key of epoch {} is not the key its rotation signed",
                copy.epoch
            ));
        }
        self.keep(copy.epoch, key);
        if let Some(list) = &proof.admins {
            self.saw_admins(list.version);
        }
        Ok(())
    }

    /// Keeps a key from a sealed copy (or the one this client just rotated to) in memory and
    /// in the config file, replacing a different key held for its epoch.
    pub(crate) fn keep(&self, epoch: u64, key: [u8; 32]) {
        if self.ring().get(epoch) == Some(key) {
            return;
        }
        let replaced = {
            let mut ring = self.ring.write().unwrap_or_else(|p| p.into_inner());
            let replaced = ring.get(epoch).is_some();
            ring.set_sealed(epoch, key);
            replaced
        };
        if replaced {
            tracing::warn!(
                "the root key this member held for epoch {epoch} differs from the sealed copy the broker delivered; using the sealed copy (the other came from an invite link)"
            );
        }
        if let Err(e) = self.save(epoch, &key) {
            tracing::warn!("cannot save the root key of epoch {epoch} to the config: {e}");
        }
    }

    /// Merges one key into the config as it is on disk now (under its lock), so concurrent
    /// clients of this member add to each other's keys. A config without this membership
    /// is left alone. The key replaces a different one held for its epoch (see
    /// [`MeshEntry::set_sealed_root_key`]).
    fn save(&self, epoch: u64, key: &[u8; 32]) -> Result<(), IdentityError> {
        let Some(dir) = &self.config_dir else {
            return Ok(());
        };
        let mine = |m: &MeshEntry| m.mesh_id == self.mesh_id && m.member_id == self.member_id;
        if !dir.load()?.meshes.iter().any(mine) {
            return Ok(());
        }
        dir.update(|config| {
            if let Some(entry) = config.meshes.iter_mut().find(|m| mine(m)) {
                entry.set_sealed_root_key(epoch, key);
            }
            Ok(())
        })
    }

    /// Notes the version of an admin list the broker sent, when the owner signed it; returns
    /// the list then.
    fn see_list<'l>(&self, list: Option<&'l AdminList>) -> Option<&'l AdminList> {
        let list = list.filter(|l| l.verifies(&self.mesh_id, &self.owner_pubkey))?;
        self.saw_admins(list.version);
        Some(list)
    }

    /// Notes an owner-signed admin list version this member has seen (verified by the caller),
    /// in memory and in the config.
    pub(crate) fn saw_admins(&self, version: u64) {
        if self.admins_seen.fetch_max(version, Ordering::Relaxed) >= version {
            return;
        }
        let Some(dir) = &self.config_dir else {
            return;
        };
        let saved = dir.update(|config| {
            for entry in config.meshes.iter_mut() {
                if entry.mesh_id == self.mesh_id && entry.member_id == self.member_id {
                    entry.admin_list_version = entry.admin_list_version.max(version);
                }
            }
            Ok(())
        });
        if let Err(e) = saved {
            tracing::warn!("cannot save the admin list version to the config: {e}");
        }
    }

    /// The key this client signs rotations with: the owner key where it is held, else the
    /// member key (which the owner's admin list must name).
    fn signer(&self) -> Result<&SignKeyPair, ClientError> {
        self.owner
            .as_ref()
            .or(self.member.as_ref())
            .ok_or_else(|| ClientError::Protocol("this member's key is unusable".into()))
    }

    /// Takes in what a frame carries for the key ring: a `key_rotated` event or a `keys`
    /// answer. True when the frame was that (and is not for anyone else).
    pub(crate) fn take_frame(&self, frame: &ServerMessage) -> bool {
        match frame {
            ServerMessage::Push(p) if is_key_event(p) => {
                let copy = p
                    .event_data
                    .clone()
                    .and_then(|d| serde_json::from_value::<EpochKey>(d).ok());
                // A key event carries no admin list.
                self.absorb_all(copy.as_slice(), None);
            }
            ServerMessage::Keys { keys, admins, .. } => self.take_keys(keys, admins.as_ref()),
            _ => return false,
        }
        true
    }

    /// Takes in a `keys` answer: notes its admin list, then takes the copies that verify.
    fn take_keys(&self, keys: &[EpochKey], admins: Option<&AdminList>) {
        let current = self.see_list(admins);
        self.absorb_all(keys, current);
    }

    /// Takes every copy that verifies; one that does not is left out with a warning (a later
    /// good one still counts). `current`: as for [`Keeper::absorb`].
    fn absorb_all(&self, copies: &[EpochKey], current: Option<&AdminList>) {
        for copy in copies {
            if let Err(e) = self.absorb(copy, current) {
                tracing::warn!("ignoring a root key from the broker: {e}");
            }
        }
    }
}

/// The `since` of the `get_keys` a connection sends, given the broker's current epoch (its
/// `hello_ack`) and the newest this client holds; `None` on a mesh never rotated. It always
/// takes in the current epoch's sealed copy too, so one that differs from a key held for that
/// epoch (from an invite link) replaces it even when this member was away at the rotation.
pub(crate) fn keys_to_ask(broker_epoch: u64, held: u64) -> Option<u64> {
    (broker_epoch > 0).then(|| held.min(broker_epoch - 1))
}

fn is_key_event(p: &Push) -> bool {
    p.subtype.as_deref() == Some("system") && p.event.as_deref() == Some("key_rotated")
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub epoch: u64,
    /// Members that got the new key.
    pub members: usize,
    /// Unused invites revoked with it (their links carried the old key).
    pub invites_revoked: usize,
}

impl From<RotateKeyOk> for Rotated {
    fn from(ok: RotateKeyOk) -> Self {
        Rotated {
            epoch: ok.epoch,
            members: ok.members,
            invites_revoked: ok.invites_revoked,
        }
    }
}

impl MeshClient {
    /// The root keys this client holds now.
    pub fn key_ring(&self) -> KeyRing {
        self.keys.ring()
    }

    /// Fetches the sealed copies of epochs this client lacks and keeps them. Returns the
    /// mesh's current epoch.
    pub async fn sync_keys(&self) -> Result<u64, ClientError> {
        self.sync_keys_since(self.keys.ring().current_epoch()).await
    }

    /// Fetches the sealed copies of the epochs after `since` and keeps those whose rotation
    /// verifies.
    pub(crate) async fn sync_keys_since(&self, since: u64) -> Result<u64, ClientError> {
        match self.request(ClientMessage::GetKeys { since }).await? {
            ServerMessage::Keys {
                current,
                keys,
                admins,
            } => {
                self.keys.take_keys(&keys, admins.as_ref());
                Ok(current)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Rotates the mesh root key (owner or admin): a fresh random key, sealed here to every
    /// member the broker says must hold it, registered as the next epoch. The broker stores
    /// only the sealed copies and revokes unused invites (their links carry the old key). When
    /// membership or the epoch changed meanwhile, it starts over (a few times).
    pub async fn rotate_root_key(&self) -> Result<Rotated, ClientError> {
        self.prune_admins().await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.sync_keys().await?;
            let (epoch, holders) = match self.request(ClientMessage::ListKeyHolders {}).await? {
                ServerMessage::KeyHolders { epoch, members } => (epoch, members),
                other => return Err(unexpected(other)),
            };
            let key: [u8; 32] = crypto::random_bytes();
            let mut keys = Vec::with_capacity(holders.len());
            for h in &holders {
                let pk = Pubkey::parse(&h.pubkey)
                    .map_err(|e| ClientError::Protocol(format!("{}: {e}", h.display_name)))?;
                let x = crypto::ed25519_pk_to_x25519(&pk.0)
                    .map_err(|e| ClientError::Protocol(format!("{}: {e}", h.display_name)))?;
                let sealed =
                    crypto::seal(&key, &x).map_err(|e| ClientError::Protocol(e.to_string()))?;
                keys.push(SealedFor {
                    member_id: h.member_id.clone(),
                    sealed: STANDARD.encode(sealed),
                });
            }
            let next = epoch + 1;
            let check = root_key_check(&key);
            let proof = RotationProof::sign(
                self.keys.signer()?,
                &self.keys.mesh_id,
                next,
                &check,
                time::now_ms(),
            );
            let answer = self
                .request(ClientMessage::RotateKey(RotateKey::signed(
                    next, keys, proof,
                )))
                .await;
            match answer {
                Ok(ServerMessage::KeyRotated(ok)) if ok.epoch == next => {
                    self.keys.keep(next, key);
                    return Ok(ok.into());
                }
                Ok(ServerMessage::KeyRotated(ok)) => {
                    return Err(ClientError::Protocol(format!(
                        "the broker confirmed a rotation to key epoch {} when this one was to epoch {next}",
                        ok.epoch
                    )));
                }
                Ok(other) => return Err(unexpected(other)),
                Err(e)
                    if attempt < ROTATION_ATTEMPTS
                        && matches!(e.code(), Some("membership_changed" | "stale_key_epoch")) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A change to the owner's admin list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminChange {
    Add,
    Remove,
}

impl MeshClient {
    /// The owner-signed admin list the broker holds, checked against the owner key this client
    /// trusts (a list that does not verify is an error, never taken).
    pub async fn admin_list(&self) -> Result<Option<AdminList>, ClientError> {
        let list = match self.request(ClientMessage::GetAdmins {}).await? {
            ServerMessage::Admins { list } => list,
            other => return Err(unexpected(other)),
        };
        match list {
            Some(l) if !l.verifies(&self.keys.mesh_id, &self.keys.owner_pubkey) => {
                Err(ClientError::Protocol(
                    "the broker's admin list is not signed by this mesh's owner key".into(),
                ))
            }
            Some(l) if l.version < self.keys.admins_seen.load(Ordering::Relaxed) => {
                Err(ClientError::Protocol(format!(
                    "the broker's admin list is version {}, older than version {} this member has seen",
                    l.version,
                    self.keys.admins_seen.load(Ordering::Relaxed)
                )))
            }
            list => {
                if let Some(l) = &list {
                    self.keys.saw_admins(l.version);
                }
                Ok(list)
            }
        }
    }

    /// Whether this client holds the owner key (and so can sign admin lists).
    pub fn holds_owner_key(&self) -> bool {
        self.keys.owner.is_some()
    }

    /// Adds a member key to the owner's signed admin list or removes it (owner key needed):
    /// the current list, verified, changed, signed as the next version. Returns the new list,
    /// or `None` when it already said so.
    pub async fn change_admins(
        &self,
        pubkey_hex: &str,
        change: AdminChange,
    ) -> Result<Option<AdminList>, ClientError> {
        let current = self.admin_list().await?;
        let mut admins = current
            .as_ref()
            .map(|l| l.admins.clone())
            .unwrap_or_default();
        let listed = admins.iter().any(|a| a == pubkey_hex);
        match change {
            AdminChange::Add if listed => return Ok(None),
            AdminChange::Remove if !listed => return Ok(None),
            AdminChange::Add => admins.push(pubkey_hex.to_owned()),
            AdminChange::Remove => admins.retain(|a| a != pubkey_hex),
        }
        self.sign_admins(current.as_ref(), admins).await.map(Some)
    }

    /// Where the owner key is held: takes off the signed admin list every key that is no
    /// longer a live admin of the mesh (revoked, banned or demoted, even from a machine
    /// without the owner key), so an ex-admin's signature stops counting. Run before each
    /// rotation this client makes and after each role change. Removing only ever narrows
    /// whom members trust.
    pub async fn prune_admins(&self) -> Result<(), ClientError> {
        if !self.holds_owner_key() {
            return Ok(());
        }
        let Some(list) = self.admin_list().await? else {
            return Ok(());
        };
        let members = self.list_members().await?;
        let (bans, _) = self.list_bans().await?;
        let live_admin = |key: &String| {
            members
                .iter()
                .any(|m| &m.pubkey == key && m.role == "admin")
                && !bans.iter().any(|b| &b.pubkey == key)
        };
        let keep: Vec<String> = list
            .admins
            .iter()
            .filter(|k| live_admin(k))
            .cloned()
            .collect();
        if keep.len() < list.admins.len() {
            self.sign_admins(Some(&list), keep).await?;
        }
        Ok(())
    }

    /// Signs `admins` as the version after `current` with the owner key and stores it.
    async fn sign_admins(
        &self,
        current: Option<&AdminList>,
        admins: Vec<String>,
    ) -> Result<AdminList, ClientError> {
        let owner = self.keys.owner.as_ref().ok_or_else(|| {
            ClientError::Protocol(
                "only the machine holding the owner key signs the admin list".into(),
            )
        })?;
        let version = current.map_or(0, |l| l.version) + 1;
        let list = AdminList::sign(owner, &self.keys.mesh_id, version, admins, time::now_ms());
        match self.request(ClientMessage::SetAdmins(list)).await? {
            ServerMessage::Admins { list: Some(list) } => {
                self.keys.saw_admins(list.version);
                Ok(list)
            }
            other => Err(unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests;
