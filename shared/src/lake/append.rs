//! Appending to a table exactly once, at a cost that does not grow with the table.
//!
//! # Why pinpipe commits appends itself
//!
//! delta-rs' writer commits through a snapshot that carries the table's whole file list: before
//! a commit the table is brought up to date, after it the snapshot is advanced, and both rebuild
//! the list of live files. With one file per Lambda batch that list grows all day, and so did
//! the cost of every 100-record append (about 0.4 ms more per table version, measured). An
//! append needs none of it: it adds files and never reads the table's data.
//!
//! So a [`TableAppender`] opens the table once (a cold start reads the last checkpoint and the
//! log after it), then for each batch: writes the Parquet file (delta-rs' writer, for its
//! statistics), and writes the commit itself — the `add` actions, the sources' new positions as
//! `txn` actions and a `commitInfo` — to `_delta_log/<version>.json` with the log store's
//! put-if-absent (a conditional PUT on S3). Nothing on this path looks at the file list.
//!
//! # What an appender knows, and how it stays right
//!
//! It knows the log up to `version`: what it loaded, then every commit after it — its own, and
//! every other writer's commit it lost a race to, which it reads (one small GET) before trying
//! the next version. From those it keeps the `txn` entries written since it loaded the table, so
//! a source's position is known without replaying the log. A race lost to a commit that moved
//! one of this batch's sources (another delivery of the same records, or this batch's own
//! commit whose answer was lost) sends it back to recompute what is still new; a commit that
//! changed the table's schema or protocol makes it reload the table. When it finds itself far
//! behind (an appender idle while others wrote), it reloads rather than read the gap commit by
//! commit.
//!
//! Every `checkpointInterval` versions (100 by default) the writer that lands on the boundary
//! has a checkpoint written, in the background, so cold starts read a checkpoint and a short tail.
//!
//! Writers that keep colliding commit for each other: an append that loses a race publishes
//! itself as an intent, and the next contended writer's commit carries it (see
//! [`super::intents`]). One writer alone never lists or publishes anything.
//!
//! The scheme assumes each source is written by one delivery at a time, as Lambda does for a
//! shard with `ParallelizationFactor: 1` (the template's setting); two deliveries racing on the
//! same source are still safe, since the loser sees the winner's `txn` entries.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::{CommitData, TransactionError};
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::logstore::CommitOrBytes;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};

use object_store::path::Path;

use super::intents::{
    ABANDONED_AFTER, CONTENTION_WINDOW, Intent, IntentError, Intents, Listed, MAX_CARRIED, Move, longest_name,
};
use super::progress::{Marked, Position, SourceKey, committed_position};
use super::txn_log::{CommitSummary, summarize_commit, txn_versions};
use super::{LISTING_RETRY_PAUSE, LOAD_ATTEMPTS, LakeError, is_listing_gap};
use crate::backoff::Backoff;

/// How many commits an append may lose races to before it gives up (the batch then fails and
/// Lambda retries it).
pub const MAX_COMMIT_ATTEMPTS: u32 = 64;

/// Lost races before an append starts to back off: a few are the normal cost of sharing a log
/// with other writers and are retried at once; more mean contention.
const RACES_BEFORE_BACKOFF: u32 = 3;

/// Commits an appender reads to catch up with the table before it reloads instead (a reload
/// reads the checkpoint and every commit after it, twice: far more than this).
const MAX_TAIL_TO_READ: u64 = 200;

/// Commits read at once while catching up.
const MAX_CONCURRENT_READS: u64 = 16;

/// Sources an appender keeps positions of past its loaded state before it reloads the table.
const MAX_TAIL_ENTRIES: usize = 50_000;

/// The pause after lost race n past [`RACES_BEFORE_BACKOFF`]: full jitter up to 20 ms, 40 ms,
/// 80 ms, capped at 160 ms. Short on purpose: an appender that has lost a race has already read
/// on to the table's head, so its next attempt is not doomed; the pause only spreads writers
/// that keep colliding. A long pause starves the writer that loses most (with 8 writers, pauses
/// growing to 2 s made the slowest batch wait 10–25 s). Also the pause between attempts to add
/// columns to a table.
pub const COMMIT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(160));

/// What an exactly-once append did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The commit's table version, if anything was committed.
    pub version: Option<u64>,
    pub rows_written: usize,
    /// Items the table already held: an earlier delivery of the same records committed them
    /// (a retry after a lost answer, a timeout after the commit, a batch Lambda split), so they
    /// are not written again. Each source has one writer, so these are never another source's.
    pub already_committed: usize,
    /// Commit attempts, the successful one included (1 when no other writer got in between).
    pub attempts: u32,
    /// Other writers' appends (intents) this append's commit carried.
    pub carried: usize,
    /// The rows landed in another writer's commit, which carried this append's intent.
    pub landed_by_another: bool,
}

/// Appends batches to one table, exactly once per source position (see the module docs).
pub struct TableAppender {
    /// The table as loaded: schema, configuration, log store. Its file list is never refreshed
    /// on the append path.
    table: DeltaTable,
    /// The version `table` was loaded at.
    loaded: u64,
    /// The latest version whose commit this appender knows.
    version: u64,
    /// `txn` versions by app id, from the commits after `loaded` up to `version`.
    tail: HashMap<String, i64>,
    /// Positions of sources as of `version`, once looked up.
    known: HashMap<SourceKey, Option<Position>>,
    /// Every `txn` entry as of `loaded`, read in one pass at the first lookup that needs it.
    base: Base,
    /// Set while this appender's background checkpoint is being written: one at a time.
    checkpointing: Arc<AtomicBool>,
    /// A checkpoint came due while the last was being written: write it at the next commit.
    checkpoint_deferred: bool,
    /// The commit after the one a race was lost to, read with it: its version and its bytes
    /// (`None`: not written yet).
    prefetched: Option<(u64, Option<bytes::Bytes>)>,
    /// The table's published intents, as far as this appender has read them.
    intents: Intents,
    /// Until when this appender counts as contended: it lists and carries intents, and
    /// publishes its own after a lost race.
    contended_until: Option<Instant>,
}

/// The checkpoints this process's appenders are writing in the background.
static BACKGROUND: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Waits for the checkpoints this process's appenders are writing in the background. A process
/// that ends on its own (the CLI, the benchmark) calls it before it returns: a runtime shut down
/// under a checkpoint cancels it half-way — harmless, the next boundary writes one — and
/// delta-rs' engine reports that as a panic on stderr. (A Lambda process never ends this way.)
pub async fn settle_background_checkpoints() {
    let tasks = std::mem::take(&mut *BACKGROUND.lock().unwrap_or_else(|e| e.into_inner()));
    for task in tasks {
        let _ = task.await;
    }
}

/// The `txn` entries of the loaded state (see [`super::txn_log`]).
enum Base {
    Unread,
    Read(HashMap<String, i64>),
    /// The log could not be read in one pass: look entries up through delta-rs.
    Unavailable,
}

/// What a commit written by someone else means for an append in progress.
enum Winner {
    /// It touched none of this batch's sources and not the table's shape: try the next version.
    Unrelated,
    /// It moved one of this batch's sources: recompute what is still new.
    MovedOurSources,
    /// It is this very commit (the answer to our PUT was lost, the PUT landed).
    Ours,
    /// Another writer's commit that carried this append's intent: the rows have landed.
    Landed,
    /// It changed the schema, protocol or table properties (or the appender is too far behind
    /// to read the log commit by commit): reload the table.
    Reshaped,
}

impl TableAppender {
    /// An appender for a loaded table.
    pub fn new(table: DeltaTable) -> Result<Self, LakeError> {
        let version = table.version().ok_or_else(|| LakeError::Delta {
            uri: table.table_url().to_string(),
            source: DeltaTableError::Generic("the table is not loaded".into()),
        })?;
        let intents = Intents::new(table.log_store().object_store(None), longest_name(table.table_url()));
        Ok(Self {
            table,
            loaded: version,
            version,
            tail: HashMap::new(),
            known: HashMap::new(),
            base: Base::Unread,
            checkpointing: Arc::new(AtomicBool::new(false)),
            checkpoint_deferred: false,
            prefetched: None,
            intents,
            contended_until: None,
        })
    }

    /// The table as last loaded (its schema and properties are current; its file list is not).
    pub fn table(&self) -> &DeltaTable {
        &self.table
    }

    /// The latest table version this appender knows of.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn uri(&self) -> String {
        self.table.table_url().to_string()
    }

    fn delta(&self, source: DeltaTableError) -> LakeError {
        LakeError::Delta { uri: self.uri(), source }
    }

    /// Brings the table up to the latest version, the slow way (the whole log state is read).
    pub async fn reload(&mut self) -> Result<(), LakeError> {
        let mut attempt = 1;
        while let Err(e) = self.table.update_state().await {
            if !is_listing_gap(&e) || attempt >= LOAD_ATTEMPTS {
                return Err(self.delta(e));
            }
            tokio::time::sleep(LISTING_RETRY_PAUSE.delay(attempt)).await;
            attempt += 1;
        }
        let version = self.table.version().unwrap_or(self.version);
        (self.loaded, self.version) = (version, version);
        self.tail.clear();
        self.known.clear();
        self.base = Base::Unread;
        self.prefetched = None;
        Ok(())
    }

    /// The position the table records for `key`, as of [`Self::version`].
    pub async fn position(&mut self, key: &SourceKey) -> Result<Option<Position>, LakeError> {
        if let Some(position) = self.known.get(key) {
            return Ok(position.clone());
        }
        let app_ids = key.app_ids();
        // A position's chunks are always written together, so they are all in a commit or none:
        // the tail's (newer) if it has them, else the loaded state's.
        let chunks = |versions: &HashMap<String, i64>| -> Option<Vec<i64>> {
            app_ids.iter().map(|id| versions.get(id).copied()).collect()
        };
        let versions = match chunks(&self.tail) {
            Some(versions) => Some(versions),
            None => match self.base().await {
                Some(base) => chunks(base),
                None => {
                    let position = committed_position(&self.table, key).await?;
                    self.known.insert(key.clone(), position.clone());
                    return Ok(position);
                }
            },
        };
        let position = match versions {
            Some(versions) => Some(key.decode(&versions).ok_or_else(|| LakeError::Progress {
                uri: self.uri(),
                key: key.to_string(),
                detail: "a version is out of range".into(),
            })?),
            None => None,
        };
        self.known.insert(key.clone(), position.clone());
        Ok(position)
    }

    /// The `txn` entries of the loaded state, read at the first call; `None` when the log
    /// cannot be read in one pass (then entries are looked up through delta-rs).
    async fn base(&mut self) -> Option<&HashMap<String, i64>> {
        if let Base::Unread = self.base {
            self.base = match txn_versions(&self.table, self.loaded).await {
                Ok(versions) => Base::Read(versions),
                Err(error) => {
                    tracing::debug!(table = %self.uri(), %error, "reading progress entry by entry");
                    Base::Unavailable
                }
            };
        }
        match &self.base {
            Base::Read(versions) => Some(versions),
            _ => None,
        }
    }

    /// Appends `items` in one commit, skipping every item at or below the position the table
    /// already records for its source, and recording for each source the highest position in
    /// `items`. `build` turns the items still to write into one batch.
    pub async fn append<T>(
        &mut self,
        items: &[Marked<T>],
        app_metadata: serde_json::Map<String, serde_json::Value>,
        build: impl Fn(&[&T]) -> Result<RecordBatch, LakeError>,
    ) -> Result<AppendOutcome, LakeError> {
        let mut highest: BTreeMap<&SourceKey, &Position> = BTreeMap::new();
        for m in items {
            let entry = highest.entry(&m.key).or_insert(&m.position);
            if m.position > **entry {
                *entry = &m.position;
            }
        }
        let mut attempts = 0u32;
        let mut races = 0u32;
        'recompute: loop {
            let mut committed = HashMap::new();
            for key in highest.keys() {
                committed.insert(*key, self.position(key).await?);
            }
            let is_new = |m: &Marked<T>| committed[&m.key].as_ref().is_none_or(|done| m.position > *done);
            let fresh: Vec<&T> = items.iter().filter(|m| is_new(m)).map(|m| &m.item).collect();
            if fresh.is_empty() {
                let attempts = attempts.max(1);
                let already_committed = items.len();
                return Ok(AppendOutcome { version: None, already_committed, attempts, ..Default::default() });
            }
            let now_ms = chrono::Utc::now().timestamp_millis();
            let mut txns = Vec::new();
            let mut moves = Vec::new();
            for (key, top) in &highest {
                let from = committed[*key].clone();
                if from.as_ref().is_some_and(|done| *top <= done) {
                    continue;
                }
                txns.extend(self.txns_for(key, top, now_ms)?);
                moves.push(Move { key: (*key).clone(), from, to: (*top).clone() });
            }
            let adds = self.write_files(build(&fresh)?).await?;
            let own_file = adds.first().map(|add| add.path.clone());
            // This round's intent, once published (after its first lost race).
            let mut published: Option<Path> = None;
            loop {
                attempts += 1;
                if attempts > MAX_COMMIT_ATTEMPTS {
                    return Err(LakeError::Contended { uri: self.uri(), attempts: MAX_COMMIT_ATTEMPTS });
                }
                let carried = if self.contended() { self.carry(&moves, published.as_ref()).await } else { Vec::new() };
                let mut all_txns = txns.clone();
                for (_, intent) in &carried {
                    for m in &intent.moves {
                        all_txns.extend(self.txns_for(&m.key, &m.to, now_ms)?);
                    }
                }
                let bytes = self.commit_bytes(&adds, &carried, &all_txns, &app_metadata)?;
                let target = self.version + 1;
                let written = self
                    .table
                    .log_store()
                    .write_commit_entry(target, CommitOrBytes::LogBytes(bytes.clone()), uuid::Uuid::new_v4())
                    .await;
                let winner = match written {
                    Ok(()) => Winner::Ours,
                    Err(TransactionError::VersionAlreadyExists(_)) => {
                        self.read_winner(target, &txns, own_file.as_deref(), &bytes).await?
                    }
                    Err(e) => return Err(self.delta(e.into())),
                };
                let winner = match winner {
                    Winner::Unrelated => {
                        races += 1;
                        self.contended_until = Some(Instant::now() + CONTENTION_WINDOW);
                        // The table may have moved further than the commit we lost to: read on to
                        // its head, so the next attempt aims at a free version instead of losing
                        // again to a commit that is already there (a GET is cheaper than a refused
                        // PUT, and it does not hold up the writers whose PUTs are landing).
                        // Meanwhile, publish this append, so whoever commits next can carry it.
                        let publish = {
                            let (intents, due) = (self.intents.publisher(), published.is_none());
                            let intent = Intent { moves: moves.clone(), adds: adds.clone() };
                            async move {
                                if !due {
                                    return None;
                                }
                                intents
                                    .publish(&intent)
                                    .await
                                    .inspect_err(|error| tracing::debug!(%error, "could not publish an intent"))
                                    .ok()
                            }
                        };
                        let (ahead, newly_published) =
                            tokio::join!(self.read_ahead(&txns, own_file.as_deref()), publish);
                        published = published.or(newly_published);
                        ahead?
                    }
                    other => other,
                };
                let rows_written = fresh.len();
                let already_committed = items.len() - rows_written;
                let outcome = AppendOutcome { rows_written, already_committed, attempts, ..Default::default() };
                match winner {
                    Winner::Ours => {
                        self.learn_own(target, &all_txns, &moves, &carried);
                        self.checkpoint_if_due(target).await;
                        self.intents.delete_later(carried.iter().map(|(path, _)| path.clone()).chain(published));
                        return Ok(AppendOutcome { version: Some(target), carried: carried.len(), ..outcome });
                    }
                    Winner::Landed => {
                        // The commit that carried this append moved its sources to `moves`' ends.
                        self.learn_own(self.version, &[], &moves, &[]);
                        self.intents.delete_later(published);
                        return Ok(AppendOutcome { version: Some(self.version), landed_by_another: true, ..outcome });
                    }
                    Winner::MovedOurSources => {
                        self.intents.delete_later(published);
                        continue 'recompute;
                    }
                    Winner::Reshaped => {
                        self.intents.delete_later(published);
                        self.reload().await?;
                        continue 'recompute;
                    }
                    Winner::Unrelated => {}
                }
                tracing::debug!(table = %self.uri(), version = target, races, "lost a commit race; trying the head");
                if races > RACES_BEFORE_BACKOFF {
                    tokio::time::sleep(COMMIT_BACKOFF.delay(races - RACES_BEFORE_BACKOFF)).await;
                }
            }
        }
    }

    /// Whether this appender lost a race within the last [`CONTENTION_WINDOW`].
    fn contended(&self) -> bool {
        self.contended_until.is_some_and(|until| Instant::now() < until)
    }

    /// The `txn` actions that record `position` for `key`.
    fn txns_for(&self, key: &SourceKey, position: &Position, now_ms: i64) -> Result<Vec<Transaction>, LakeError> {
        let versions = key.encode(position).ok_or_else(|| LakeError::Progress {
            uri: self.uri(),
            key: key.to_string(),
            detail: format!("position {position} does not fit an i64"),
        })?;
        Ok(key
            .app_ids()
            .into_iter()
            .zip(versions)
            .map(|(app_id, v)| Transaction::new_with_last_update(app_id, v, Some(now_ms)))
            .collect())
    }

    /// The published intents the next commit can carry beside this append's `own` moves, oldest
    /// first: those whose every source is, as of [`Self::version`], exactly where the intent
    /// moves it from, and not moved by anything else in the commit. Stale intents (a source
    /// already past `from`) and abandoned ones are deleted on the way. Listing is only help:
    /// when it fails, the append commits alone.
    async fn carry(&mut self, own: &[Move], own_intent: Option<&Path>) -> Vec<(Path, Arc<Intent>)> {
        match self.choose_carried(own, own_intent).await {
            Ok(carried) => carried,
            Err(error) => {
                tracing::debug!(table = %self.uri(), %error, "could not read intents; committing alone");
                Vec::new()
            }
        }
    }

    async fn choose_carried(
        &mut self,
        own: &[Move],
        own_intent: Option<&Path>,
    ) -> Result<Vec<(Path, Arc<Intent>)>, IntentError> {
        let mut listed = self.intents.list().await?;
        listed.retain(|l| Some(&l.path) != own_intent);
        // Names too long to carry their moves: read those intents to learn them.
        let nameless: Vec<&Path> = listed.iter().filter(|l| l.moves.is_none()).map(|l| &l.path).collect();
        let read = self.intents.read(&nameless).await?;
        let mut learnt: HashMap<Path, Vec<Move>> = HashMap::new();
        for (path, intent) in nameless.into_iter().zip(read) {
            if let Some(intent) = intent {
                learnt.insert(path.clone(), intent.moves.clone());
            }
        }
        let mut moving: HashSet<SourceKey> = own.iter().map(|m| m.key.clone()).collect();
        let (mut chosen, mut stale) = (Vec::new(), Vec::new());
        for Listed { path, age, moves } in listed {
            let Some(moves) = moves.or_else(|| learnt.remove(&path)) else {
                if age >= ABANDONED_AFTER {
                    stale.push(path); // unreadable, or gone already
                }
                continue;
            };
            if chosen.len() >= MAX_CARRIED {
                continue;
            }
            let (mut committable, mut past) = (true, false);
            for m in &moves {
                match self.position(&m.key).await {
                    Ok(current) => {
                        past |= current > m.from;
                        committable &= current == m.from && !moving.contains(&m.key);
                    }
                    Err(_) => committable = false,
                }
            }
            if past || (!committable && age >= ABANDONED_AFTER) {
                stale.push(path);
            } else if committable {
                moving.extend(moves.into_iter().map(|m| m.key));
                chosen.push(path);
            }
        }
        self.intents.delete_later(stale);
        let intents = self.intents.read(&chosen.iter().collect::<Vec<_>>()).await?;
        // An intent gone since the listing was carried or withdrawn by its writer: skip it.
        Ok(chosen
            .into_iter()
            .zip(intents)
            .filter_map(|(path, intent)| intent.map(|intent| (path, intent)))
            .filter(|(_, intent)| !intent.adds.is_empty())
            .collect())
    }

    /// Writes `batch` as Parquet files under the table and returns their `add` actions.
    async fn write_files(&self, batch: RecordBatch) -> Result<Vec<Add>, LakeError> {
        let properties = super::file_layout::writer_properties(&batch.schema());
        let mut writer =
            RecordBatchWriter::for_table(&self.table).map_err(|e| self.delta(e))?.with_writer_properties(properties);
        writer.write(batch).await.map_err(|e| self.delta(e))?;
        writer.flush().await.map_err(|e| self.delta(e))
    }

    /// The commit's log entry: `commitInfo`, the `add` actions of this append and of the
    /// intents it carries, and `txns` (all of their sources' new positions).
    fn commit_bytes(
        &self,
        adds: &[Add],
        carried: &[(Path, Arc<Intent>)],
        txns: &[Transaction],
        app_metadata: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bytes::Bytes, LakeError> {
        let operation = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
        let mut metadata: HashMap<String, serde_json::Value> = app_metadata.clone().into_iter().collect();
        if !carried.is_empty() {
            metadata.insert("pinpipeCarried".into(), carried.len().into());
        }
        let carried_adds = carried.iter().flat_map(|(_, intent)| intent.adds.iter());
        let actions: Vec<Action> = adds.iter().chain(carried_adds).cloned().map(Action::Add).collect();
        CommitData::new(actions, operation, metadata, txns.to_vec())
            .get_bytes()
            .map_err(|e| self.delta(DeltaTableError::from(e)))
    }

    /// Reads the commit at `version` that another writer won, learns its `txn` entries, and
    /// says what it means for an append that tried to commit `ours` (its own `txn` actions, its
    /// first file `own_file`, the log entry `our_bytes`) there. A commit identical to ours to
    /// the byte is ours: its PUT landed and the answer was lost (the entry names this attempt's
    /// own new files, so no other writer can write it).
    ///
    /// The version after it is read at the same time, for [`Self::read_ahead`]: usually there is
    /// none yet and the next attempt can go, one round trip after the lost race rather than two
    /// (a writer that keeps losing must not take longer per try than the writers that win).
    async fn read_winner(
        &mut self,
        version: u64,
        ours: &[Transaction],
        own_file: Option<&str>,
        our_bytes: &[u8],
    ) -> Result<Winner, LakeError> {
        let log_store = self.table.log_store();
        let (bytes, next) =
            tokio::join!(log_store.read_commit_entry(version), log_store.read_commit_entry(version + 1));
        let bytes = bytes.map_err(|e| self.delta(e))?;
        self.prefetched = next.ok().map(|next| (version + 1, next));
        let Some(bytes) = bytes else {
            // The version exists but cannot be read back yet: treat it as a reshape, and reload.
            return Ok(Winner::Reshaped);
        };
        let winner = self.learn_commit(version, &bytes, ours, own_file)?;
        Ok(if bytes.as_ref() == our_bytes && !matches!(winner, Winner::Reshaped) { Winner::Ours } else { winner })
    }

    /// Reads the commits after [`Self::version`] up to the table's head (the first version not
    /// written yet), learning each, and says what the first that matters means for an append of
    /// `ours` (see [`Self::read_winner`]). The reads go in rounds of 2, 4, 8, ... versions at
    /// once, so a writer far behind (one idle while others wrote, or slowed by a busy store)
    /// catches up in a few round trips and reads at most about twice the commits there are.
    /// Very far behind, it asks for a reload instead.
    async fn read_ahead(&mut self, ours: &[Transaction], own_file: Option<&str>) -> Result<Winner, LakeError> {
        let start = self.version;
        let mut round = 2u64;
        while self.version - start < MAX_TAIL_TO_READ {
            let next = self.version + 1;
            let mut reads: Vec<Option<bytes::Bytes>> = Vec::new();
            let from = match self.prefetched.take() {
                Some((version, bytes)) if version == next => {
                    let head = bytes.is_none();
                    reads.push(bytes);
                    if head {
                        return Ok(Winner::Unrelated);
                    }
                    next + 1
                }
                _ => next,
            };
            let log_store = self.table.log_store();
            let fetched = futures::future::join_all((from..next + round).map(|v| log_store.read_commit_entry(v))).await;
            for read in fetched {
                reads.push(read.map_err(|e| self.delta(e))?);
            }
            for (i, read) in reads.into_iter().enumerate() {
                let Some(bytes) = read else {
                    return Ok(Winner::Unrelated);
                };
                match self.learn_commit(next + i as u64, &bytes, ours, own_file)? {
                    Winner::Unrelated => {}
                    other => return Ok(other),
                }
            }
            round = (round * 2).min(MAX_CONCURRENT_READS);
        }
        Ok(Winner::Reshaped)
    }

    /// Learns the commit `bytes` at `version` (the appender now knows the log up to it) and
    /// says what it means for an append of `ours` whose first file is `own_file`: carried it
    /// (it adds that file), moved one of its sources, reshaped the table, or none of these.
    fn learn_commit(
        &mut self,
        version: u64,
        bytes: &[u8],
        ours: &[Transaction],
        own_file: Option<&str>,
    ) -> Result<Winner, LakeError> {
        let CommitSummary { txns: theirs, reshapes: reshaped, adds } =
            summarize_commit(version, bytes).map_err(|e| self.delta(DeltaTableError::Generic(e.to_string())))?;
        self.version = version;
        let moved_ours = theirs.iter().any(|(app_id, _)| ours.iter().any(|t| &t.app_id == app_id));
        for (app_id, v) in &theirs {
            self.tail.insert(app_id.clone(), *v);
        }
        if !theirs.is_empty() {
            // Positions derived before this commit may be stale for the sources it moved.
            self.known.retain(|key, _| key.app_ids().iter().all(|id| !theirs.iter().any(|(a, _)| a == id)));
        }
        let carried_ours = own_file.is_some_and(|file| adds.iter().any(|path| path == file));
        Ok(if reshaped {
            Winner::Reshaped
        } else if carried_ours {
            Winner::Landed
        } else if moved_ours {
            Winner::MovedOurSources
        } else {
            Winner::Unrelated
        })
    }

    /// Records a commit at `version` that moved this append's sources as `moves` says, and
    /// carried the intents `carried` (`txns`: the commit's `txn` actions, if not learnt from
    /// the commit already). Those positions stay known even when the next checkpoint rebase
    /// clears the tail: otherwise the next batch would look its own source up in the log (a
    /// scan of the checkpoint and the commits after it for each `txn` entry).
    fn learn_own(&mut self, version: u64, txns: &[Transaction], moves: &[Move], carried: &[(Path, Arc<Intent>)]) {
        self.version = version;
        for txn in txns {
            self.tail.insert(txn.app_id.clone(), txn.version);
        }
        let carried_moves = carried.iter().flat_map(|(_, intent)| intent.moves.iter());
        for m in moves.iter().chain(carried_moves) {
            self.known.insert(m.key.clone(), Some(m.to.clone()));
        }
    }

    /// Has a checkpoint written for `version` when it is on the table's checkpoint interval,
    /// so a cold start reads a checkpoint and a short tail of commits.
    ///
    /// The checkpoint is written by a task of its own, off the batch's path: writing one means
    /// replaying the log up to `version` (a few hundred GETs on S3, seconds at the boundary),
    /// which no batch should wait for. In Lambda the task runs on in the container (frozen
    /// between invocations, resumed by the next); if the container goes away first, the
    /// checkpoint is simply not there and the next boundary writes one. A failure only costs
    /// the next cold start time, so it is logged.
    ///
    /// The appender's own loaded state is not rebased: what it knows past `loaded` is the
    /// `txn` tail, one entry per source, not per commit. Only a tail of very many sources
    /// (the batch path's objects, in a container alive for days) makes it reload.
    async fn checkpoint_if_due(&mut self, version: u64) {
        let interval =
            self.table.snapshot().map_or(100, |s| s.table_config().checkpoint_interval.map_or(100, |n| n.get()));
        // Due on the interval, or at this appender's first commit after a boundary it landed on
        // while its last checkpoint was still being written (a fast writer on a local lake):
        // otherwise the tail a cold start reads would grow past the interval.
        let due = version.is_multiple_of(interval) || self.checkpoint_deferred;
        if due && !self.checkpointing.swap(true, Ordering::AcqRel) {
            self.checkpoint_deferred = false;
            let (log_store, uri, busy) = (self.table.log_store(), self.uri(), self.checkpointing.clone());
            let task = tokio::spawn(async move {
                // Cleared however the task ends, a panic in delta-rs included.
                let _idle_again = ClearOnDrop(busy);
                let mut table = DeltaTable::new(log_store);
                let written = match table.load_version(version).await {
                    Ok(()) => deltalake::checkpoints::create_checkpoint(&table, None).await,
                    Err(error) => Err(error),
                };
                match written {
                    Ok(()) => tracing::info!(table = %uri, version, "checkpoint written"),
                    Err(error) => tracing::warn!(table = %uri, version, %error, "checkpoint failed"),
                }
            });
            let mut background = BACKGROUND.lock().unwrap_or_else(|e| e.into_inner());
            background.retain(|task| !task.is_finished());
            background.push(task);
        } else if due {
            tracing::debug!(table = %self.uri(), version, "a checkpoint is still being written; writing this one later");
            self.checkpoint_deferred = true;
        }
        if self.tail.len() > MAX_TAIL_ENTRIES
            && let Err(error) = self.reload().await
        {
            tracing::warn!(table = %self.uri(), version, %error, "could not reload the table to shorten its txn tail");
        }
    }
}

/// Clears a flag when dropped.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Whether a failed commit lost a race (and may succeed after reloading the table).
pub fn is_conflict(error: &DeltaTableError) -> bool {
    matches!(
        error,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(_)
                    | TransactionError::MaxCommitAttempts(_)
                    | TransactionError::VersionAlreadyExists(_)
            }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(COMMIT_BACKOFF.ceiling(1), Duration::from_millis(20));
        for attempt in 0..20 {
            assert!(COMMIT_BACKOFF.delay(attempt) <= Duration::from_millis(160));
        }
    }
}
