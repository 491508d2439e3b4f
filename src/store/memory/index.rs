//! The tantivy index that ranks memories and skills (see the parent module): its schema and
//! analyzer, the thread that owns the writer, and the rebuild from redb.

use super::*;

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    mesh: Field,
    kind: Field,
    content: Field,
    tags: Field,
}

/// What the index holds of one document: its id (unique across kinds), mesh, kind, the text
/// ranked and the tags.
pub(crate) struct IndexedText {
    pub id: String,
    pub mesh_id: String,
    pub kind: &'static str,
    pub content: String,
    pub tags: Vec<String>,
}

/// The kind of a memory's document.
const MEMORY_KIND: &str = "memory";

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        mesh: b.add_text_field("mesh", STRING),
        kind: b.add_text_field("kind", STRING),
        content: b.add_text_field("content", text.clone()),
        tags: b.add_text_field("tags", text),
    };
    (b.build(), fields)
}

/// Lowercase, English stemming: "Deploying" finds "deploy".
fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// What an index commit records about itself.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    version: u32,
    ops: u64,
}

fn payload(ops: u64) -> String {
    serde_json::json!({ "version": INDEX_VERSION, "ops": ops }).to_string()
}

enum Change {
    Add(Box<TantivyDocument>),
    Delete(String),
    /// Deletes the document with this id, then adds the new one (in this order, one commit).
    Replace(String, Box<TantivyDocument>),
}

/// Where a change's outcome goes once its commit is done.
type Done = oneshot::Sender<Result<(), String>>;

struct Job {
    op: u64,
    change: Change,
    done: Done,
}

enum Msg {
    Job(Job),
    Stop,
}

/// The memory search index. Cheap to share behind an `Arc`; one writer thread inside.
pub struct MemoryIndex {
    reader: IndexReader,
    parser: QueryParser,
    fields: Fields,
    jobs: mpsc::Sender<Msg>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl MemoryIndex {
    /// Opens the index in `dir`, rebuilding it from `store` when it is missing, unreadable,
    /// of another version or behind, and starts its writer thread.
    pub fn open(dir: &Path, store: &Store) -> Result<MemoryIndex, MemoryError> {
        let (ops, count) = store.memory_totals()?;
        let (index, writer) = match open_current(dir, ops, count) {
            Ok(opened) => opened,
            Err(why) => {
                tracing::info!("rebuilding the memory index from storage: {why}");
                rebuild(dir, store)?
            }
        };
        let (_, fields) = schema();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let parser = QueryParser::for_index(&index, vec![fields.content, fields.tags]);
        let (jobs, rx) = mpsc::channel();
        let thread = {
            let reader: IndexReader = reader.clone();
            std::thread::Builder::new()
                .name("memory-indexer".into())
                .spawn(move || indexer_loop(writer, reader, rx, fields, ops))
                .map_err(|e| MemoryError::Index(format!("cannot start the indexer thread: {e}")))?
        };
        Ok(MemoryIndex {
            reader,
            parser,
            fields,
            jobs,
            writer: Mutex::new(Some(thread)),
        })
    }

    /// Stores a memory and indexes it; returns once `recall` can find it.
    pub async fn remember(&self, store: &Store, record: MemoryRecord) -> Result<(), MemoryError> {
        match self.remember_within(store, record, u64::MAX).await? {
            Ok(()) => Ok(()),
            Err(e) => Err(MemoryError::Index(e.to_string())),
        }
    }

    /// Like [`remember`](Self::remember), unless the mesh already holds `max` memories.
    pub async fn remember_within(
        &self,
        store: &Store,
        record: MemoryRecord,
        max: u64,
    ) -> Result<Result<(), QuotaExceeded>, MemoryError> {
        let doc = document(self.fields, &memory_text(&record));
        let op = match store.insert_memory(record, max).await? {
            Ok(op) => op,
            Err(e) => return Ok(Err(e)),
        };
        self.apply(op, Change::Add(Box::new(doc))).await.map(Ok)
    }

    /// Deletes a memory of `mesh_id` if `by` is its author or an owner/admin. Once this
    /// returns `Done`, `recall` no longer finds it.
    pub async fn forget(
        &self,
        store: &Store,
        mesh_id: &str,
        id: &str,
        by: Actor,
    ) -> Result<Forgotten, MemoryError> {
        let (outcome, op) = store.remove_memory(mesh_id.into(), id.into(), by).await?;
        if let Some(op) = op {
            self.apply(op, Change::Delete(id.to_string())).await?;
        }
        Ok(outcome)
    }

    /// The memories of `mesh_id` that best match `query`, best first (at most `limit`).
    /// Anything typed is a valid query: what the query syntax cannot read is searched as
    /// plain words.
    pub fn recall(
        &self,
        store: &Store,
        mesh_id: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Recalled>, MemoryError> {
        self.recall_page(store, mesh_id, query, 0, limit)
    }

    /// Like [`MemoryIndex::recall`], skipping the `offset` best matches first (a later page of
    /// the same query). Only the best [`MAX_RECALL`] are ever reachable.
    pub fn recall_page(
        &self,
        store: &Store,
        mesh_id: &str,
        query: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Recalled>, MemoryError> {
        let hits = self.search(mesh_id, MEMORY_KIND, query, offset, limit)?;
        let rt = store.read()?;
        let memories = rt.open_table(MEMORIES).map_err(StoreError::from)?;
        let mut out = Vec::with_capacity(hits.len());
        for (id, score) in hits {
            // redb decides: a memory forgotten after this searcher was made is not shown.
            let memory: Option<MemoryRecord> = decode_opt(
                memories
                    .get((mesh_id, id.as_str()))
                    .map_err(StoreError::from)?,
            )?;
            if let Some(memory) = memory {
                out.push(Recalled { memory, score });
            }
        }
        Ok(out)
    }

    /// The ids of the documents of one `kind` in `mesh_id` that best match `query`, best
    /// first, with their scores, after skipping the `offset` best. Only the best
    /// [`MAX_RECALL`] are ever reachable.
    pub(in crate::store) fn search(
        &self,
        mesh_id: &str,
        kind: &str,
        query: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(String, f32)>, MemoryError> {
        let offset = offset.min(MAX_RECALL);
        let limit = limit.clamp(1, MAX_RECALL + 1 - offset);
        let text: String = query.chars().take(MAX_QUERY_CHARS).collect();
        let searcher = self.reader.searcher();
        let exactly = |field: Field, value: &str| -> (Occur, Box<dyn Query>) {
            (
                Occur::Must,
                Box::new(BoostQuery::new(
                    Box::new(TermQuery::new(
                        Term::from_field_text(field, value),
                        IndexRecordOption::Basic,
                    )),
                    0.0,
                )),
            )
        };
        let query = BooleanQuery::new(vec![
            exactly(self.fields.mesh, mesh_id),
            exactly(self.fields.kind, kind),
            (Occur::Must, self.parse(&text)),
        ]);
        let hits = searcher.search(
            &query,
            &TopDocs::with_limit(limit)
                .and_offset(offset)
                .order_by_score(),
        )?;
        let mut out = Vec::with_capacity(hits.len());
        for (score, address) in hits {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = doc.get_first(self.fields.id).and_then(|v| v.as_str()) {
                out.push((id.to_string(), score));
            }
        }
        Ok(out)
    }

    /// Puts `text` in the index in place of any document with its id; returns once a search
    /// finds it. `op` is the store operation that made the change.
    pub(in crate::store) async fn put_text(
        &self,
        op: u64,
        text: IndexedText,
    ) -> Result<(), MemoryError> {
        let id = text.id.clone();
        let doc = document(self.fields, &text);
        self.apply(op, Change::Replace(id, Box::new(doc))).await
    }

    /// Takes the document with this id out of the index; returns once no search finds it.
    pub(in crate::store) async fn drop_text(&self, op: u64, id: String) -> Result<(), MemoryError> {
        self.apply(op, Change::Delete(id)).await
    }

    /// Commits what is pending and stops the writer thread.
    pub fn close(&self) {
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = self.jobs.send(Msg::Stop);
            let _ = handle.join();
        }
    }

    /// The query syntax (`a AND b`, `"a phrase"`, `-not`, `tags:x`), or the plain words.
    fn parse(&self, text: &str) -> Box<dyn Query> {
        match self.parser.parse_query(text) {
            Ok(q) => q,
            Err(_) => self.plain_words(text),
        }
    }

    fn plain_words(&self, text: &str) -> Box<dyn Query> {
        let mut analyzer = analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut words: Vec<String> = Vec::new();
        while stream.advance() {
            let w = stream.token().text.clone();
            if !words.contains(&w) {
                words.push(w);
            }
        }
        if words.is_empty() {
            return Box::new(EmptyQuery);
        }
        let clauses = words
            .iter()
            .flat_map(|w| [self.fields.content, self.fields.tags].map(|f| (f, w)))
            .map(|(field, w)| -> (Occur, Box<dyn Query>) {
                (
                    Occur::Should,
                    Box::new(TermQuery::new(
                        Term::from_field_text(field, w),
                        IndexRecordOption::WithFreqs,
                    )),
                )
            })
            .collect();
        Box::new(BooleanQuery::new(clauses))
    }

    fn apply(
        &self,
        op: u64,
        change: Change,
    ) -> impl Future<Output = Result<(), MemoryError>> + use<> {
        let (done, rx) = oneshot::channel();
        let sent = self.jobs.send(Msg::Job(Job { op, change, done })).is_ok();
        async move {
            if !sent {
                return Err(MemoryError::Index("the indexer has stopped".into()));
            }
            match rx.await {
                Ok(result) => result.map_err(MemoryError::Index),
                Err(_) => Err(MemoryError::Index("the indexer has stopped".into())),
            }
        }
    }
}

impl Drop for MemoryIndex {
    fn drop(&mut self) {
        self.close();
    }
}

fn memory_text(record: &MemoryRecord) -> IndexedText {
    IndexedText {
        id: record.id.clone(),
        mesh_id: record.mesh_id.clone(),
        kind: MEMORY_KIND,
        content: record.content.clone(),
        tags: record.tags.clone(),
    }
}

fn document(fields: Fields, text: &IndexedText) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_text(fields.id, &text.id);
    doc.add_text(fields.mesh, &text.mesh_id);
    doc.add_text(fields.kind, text.kind);
    doc.add_text(fields.content, &text.content);
    for tag in &text.tags {
        doc.add_text(fields.tags, tag);
    }
    doc
}

fn register_tokenizer(index: &Index) {
    index.tokenizers().register(TOKENIZER, analyzer());
}

fn new_writer(index: &Index) -> Result<IndexWriter, MemoryError> {
    Ok(index.writer_with_num_threads(1, WRITER_BUDGET)?)
}

/// Opens the index as it is, if it is of this version and holds exactly what redb holds.
fn open_current(dir: &Path, ops: u64, count: u64) -> Result<(Index, IndexWriter), String> {
    if !dir.join("meta.json").is_file() {
        return Err(format!("{} has no index", dir.display()));
    }
    let index = Index::open_in_dir(dir).map_err(|e| format!("cannot open it: {e}"))?;
    if index.schema() != schema().0 {
        return Err("its schema is of another version".into());
    }
    register_tokenizer(&index);
    let meta = index
        .load_metas()
        .map_err(|e| format!("cannot read its metadata: {e}"))?;
    let recorded: Option<Payload> = meta
        .payload
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok());
    match recorded {
        Some(p) if p.version == INDEX_VERSION && p.ops == ops => {}
        Some(p) if p.version == INDEX_VERSION => {
            return Err(format!("it holds {} of {ops} changes", p.ops));
        }
        _ => return Err("it is of another version".into()),
    }
    let reader: IndexReader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(|e| format!("cannot read it: {e}"))?;
    let docs = reader.searcher().num_docs();
    if docs != count {
        return Err(format!("it holds {docs} documents, storage {count}"));
    }
    let writer = new_writer(&index).map_err(|e| e.to_string())?;
    Ok((index, writer))
}

/// Makes a new index in `dir` from every memory in `store`.
fn rebuild(dir: &Path, store: &Store) -> Result<(Index, IndexWriter), MemoryError> {
    clear_dir(dir)?;
    let (schema, fields) = schema();
    let index = Index::create_in_dir(dir, schema)?;
    register_tokenizer(&index);
    let mut writer = new_writer(&index)?;
    let rt = store.read()?;
    let ops = read_ops(&rt.open_table(META).map_err(StoreError::from)?)?;
    let memories = rt.open_table(MEMORIES).map_err(StoreError::from)?;
    let mut n = 0u64;
    for row in memories.iter().map_err(StoreError::from)? {
        let (_, v) = row.map_err(StoreError::from)?;
        let record: MemoryRecord = decode(v.value())?;
        writer.add_document(document(fields, &memory_text(&record)))?;
        n += 1;
    }
    drop(memories);
    for text in crate::store::skills::indexed_texts(&rt)? {
        writer.add_document(document(fields, &text))?;
        n += 1;
    }
    let mut commit = writer.prepare_commit()?;
    commit.set_payload(&payload(ops));
    commit.commit()?;
    tracing::info!("memory index rebuilt: {n} memories and skills");
    Ok((index, writer))
}

/// Empties (or creates) the index directory.
fn clear_dir(dir: &Path) -> Result<(), MemoryError> {
    let io = |what: &str, path: &PathBuf, e: std::io::Error| {
        MemoryError::Index(format!("cannot {what} {}: {e}", path.display()))
    };
    let path = dir.to_path_buf();
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(dir).map_err(|e| io("remove", &path, e))?;
        }
        Ok(_) => std::fs::remove_file(dir).map_err(|e| io("remove", &path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("read", &path, e)),
    }
    std::fs::create_dir_all(dir).map_err(|e| io("create", &path, e))
}

/// The writer thread: applies every pending change, commits once, reloads the reader, answers.
fn indexer_loop(
    mut writer: IndexWriter,
    reader: IndexReader,
    rx: mpsc::Receiver<Msg>,
    fields: Fields,
    mut watermark: u64,
) {
    // Operations can reach this thread out of order; the payload records only the highest
    // one below which nothing is missing.
    let mut ahead: BTreeSet<u64> = BTreeSet::new();
    let mut stop = false;
    while !stop {
        let Ok(Msg::Job(first)) = rx.recv() else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => batch.push(j),
                Ok(Msg::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        // Each job's own outcome; a failed add is not marked done, so the index counts as
        // behind and is rebuilt at the next start.
        let mut outcomes: Vec<(Done, Result<(), String>)> = Vec::with_capacity(batch.len());
        for job in batch {
            let applied = match job.change {
                Change::Add(doc) => writer.add_document(*doc).map(|_| ()),
                Change::Delete(id) => {
                    writer.delete_term(Term::from_field_text(fields.id, &id));
                    Ok(())
                }
                Change::Replace(id, doc) => {
                    writer.delete_term(Term::from_field_text(fields.id, &id));
                    writer.add_document(*doc).map(|_| ())
                }
            };
            if applied.is_ok() {
                ahead.insert(job.op);
            }
            outcomes.push((job.done, applied.map_err(|e| e.to_string())));
        }
        while ahead.first().is_some_and(|&op| op <= watermark + 1) {
            if let Some(op) = ahead.pop_first() {
                watermark = watermark.max(op);
            }
        }
        let committed = writer
            .prepare_commit()
            .and_then(|mut c| {
                c.set_payload(&payload(watermark));
                c.commit()
            })
            .and_then(|_| reader.reload())
            .map_err(|e| e.to_string());
        if let Err(e) = &committed {
            tracing::error!("memory index commit failed: {e}");
        }
        for (done, applied) in outcomes {
            let _ = done.send(applied.and(committed.clone()));
        }
    }
}
