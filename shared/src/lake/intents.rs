//! Group commits: appends that lose races are published as *intents*, and the next contended
//! writer to commit carries them in its own commit.
//!
//! # Why
//!
//! A Delta table has one log, and each version of it is won by one conditional PUT. With one
//! optimistic commit per batch, writers that share a table take turns: under contention (8
//! shards on one table) most attempts lose, and optimistic commits are not fair, so the writer
//! that loses most waits seconds and, now and then, gives up. A committer that lands many
//! batches per commit turns the same log into many times the throughput. pinpipe gets one
//! without a separate service: the writers that are contending commit for each other.
//!
//! # The protocol
//!
//! An appender that has lost a race recently (within [`CONTENTION_WINDOW`]) is *contended*:
//!
//! 1. when one of its commits loses a race, it publishes its append as an intent: an object
//!    `_pinpipe_intents/<id>.<moves>.json` under the table, holding the `add` actions of the
//!    Parquet files it already wrote and, for each source, the position it moves from and to
//!    (the moves also in the name when they fit, so a lister need not read the object);
//! 2. before each commit attempt it lists the intents, and its commit also carries every intent
//!    that is still committable at the version it is aiming for: each of the intent's sources
//!    is exactly at the intent's `from` position, and no other part of the commit moves it
//!    (only the intents it carries are read);
//! 3. the writer whose intent another commit carried learns it when it reads that commit (the
//!    commit names its files): its batch has landed.
//!
//! An appender that is not contended neither lists nor publishes: one writer alone pays nothing.
//!
//! # Why exactly once still holds
//!
//! The rows of an intent are exactly its sources' records after `from` up to `to`. A commit at
//! version V carries it only if, with every commit up to V-1 known, each source is at `from`;
//! the conditional PUT makes V the only commit after V-1, so the records land once. Every later
//! commit sees the sources past `from` and no longer carries the intent. A commit that loses
//! its version learns the winner and chooses again what it carries.
//!
//! # Crash points, and what cleans up
//!
//! - A writer that crashes after publishing: its intent is carried by the next contended
//!   commit, or not at all. Either way the batch's redelivery sees where its source is and
//!   writes only what is missing.
//! - A writer that crashes after its commit carried intents, before deleting them: they are
//!   stale (their sources moved past `from`), never carried again, and deleted by the next
//!   writer that lists them.
//! - Intents nobody can read or carry for [`ABANDONED_AFTER`] are deleted by whoever lists
//!   them; the maintenance job sweeps them too ([`sweep`]). Their Parquet files are then
//!   referenced by no commit, and vacuum removes them like any unreferenced file.
//!
//! Deleting an intent is always safe: it only withdraws an offer of help.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use deltalake::kernel::Add;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use serde::{Deserialize, Serialize};

use super::progress::{Position, SourceKey};

/// Where a table's intents live. The leading underscore keeps Delta readers and vacuum away.
pub const INTENTS_DIR: &str = "_pinpipe_intents";

/// How long after its last lost race an appender stays contended (lists and publishes).
pub const CONTENTION_WINDOW: Duration = Duration::from_secs(10);

/// The most intents one commit carries, so a commit stays a small object.
pub const MAX_CARRIED: usize = 32;

/// An intent older than this is no longer waited on by any invocation (Lambda's longest is 15
/// minutes): when it cannot be carried, it is deleted.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(15 * 60);

/// Intents read at once.
const CONCURRENT_READS: usize = 16;

/// One source's move in an append: the records after `from` (`None`: the table had none of this
/// source) up to and including `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub key: SourceKey,
    pub from: Option<Position>,
    pub to: Position,
}

/// An append published for another writer to commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intent {
    pub moves: Vec<Move>,
    /// The `add` actions of the Parquet files already written.
    pub adds: Vec<Add>,
}

/// An intent as listed: where it is, how old, and the moves its name carries (`None`: a name
/// without them, whose object must be read to learn them).
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: Path,
    pub age: Duration,
    pub moves: Option<Vec<Move>>,
}

/// A table's intents, with what this writer has already read of them (an intent never changes,
/// so each is read at most once).
pub struct Intents {
    store: Arc<dyn ObjectStore>,
    /// The longest a name may be (see [`longest_name`]).
    longest_name: usize,
    read: HashMap<Path, Option<Arc<Intent>>>,
}

/// The longest intent file name the store at `url` takes: S3 keys may be 1,024 bytes long, a
/// file name on a local disk 255 (with room for the suffix object_store adds while writing).
pub fn longest_name(url: &url::Url) -> usize {
    if url.scheme() == "file" { 240 } else { 900 }
}

impl Intents {
    /// The intents of the table whose root `store` is, where names may be `longest_name` long.
    pub fn new(store: Arc<dyn ObjectStore>, longest_name: usize) -> Self {
        Self { store, longest_name, read: HashMap::new() }
    }

    /// A handle that publishes intents, usable while this is borrowed elsewhere.
    pub fn publisher(&self) -> Publisher {
        Publisher { store: self.store.clone(), longest_name: self.longest_name }
    }

    /// The intents there are now, oldest first, with the moves their names carry. Nothing is
    /// read: a writer reads only the intents it is about to carry ([`Self::read`]).
    pub async fn list(&mut self) -> Result<Vec<Listed>, IntentError> {
        let listed = list_with_ages(&self.store).await?;
        self.read.retain(|path, _| listed.iter().any(|(p, _)| p == path));
        Ok(listed
            .into_iter()
            .map(|(path, age)| Listed { moves: path.filename().and_then(moves_in_name), path, age })
            .collect())
    }

    /// The intents at `paths`, read at once (those read before are not read again). An intent
    /// that is gone (carried or withdrawn since it was listed) or unreadable is `None`.
    pub async fn read(&mut self, paths: &[&Path]) -> Result<Vec<Option<Arc<Intent>>>, IntentError> {
        let unread: Vec<Path> = paths.iter().filter(|p| !self.read.contains_key(p)).map(|p| (*p).clone()).collect();
        let store = self.store.clone();
        let fetched: Vec<(Path, Option<Arc<Intent>>)> = futures::stream::iter(unread)
            .map(|path| {
                let store = store.clone();
                async move {
                    let got = match store.get(&path).await {
                        Ok(got) => got.bytes().await,
                        Err(object_store::Error::NotFound { .. }) => return Ok((path, None)),
                        Err(e) => Err(e),
                    };
                    got.map(|bytes| {
                        let intent = parse(&path, &bytes);
                        (path, intent)
                    })
                    .map_err(|e| IntentError::Store(INTENTS_DIR.to_string(), e))
                }
            })
            .buffer_unordered(CONCURRENT_READS)
            .try_collect()
            .await?;
        self.read.extend(fetched);
        Ok(paths.iter().map(|p| self.read.get(*p).cloned().flatten()).collect())
    }

    /// Deletes `paths` in the background: a delete only withdraws an offer, so nothing waits
    /// for it, and one that fails is retried by the next writer that lists the intent.
    pub fn delete_later(&mut self, paths: impl IntoIterator<Item = Path>) {
        let paths: Vec<Path> = paths.into_iter().collect();
        if paths.is_empty() {
            return;
        }
        for path in &paths {
            self.read.remove(path);
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            futures::stream::iter(paths)
                .for_each_concurrent(CONCURRENT_READS, |path| {
                    let store = store.clone();
                    async move {
                        if let Err(error) = store.delete(&path).await {
                            tracing::debug!(%path, %error, "could not delete an intent; the next lister will");
                        }
                    }
                })
                .await;
        });
    }
}

/// Publishes intents to a table's store.
pub struct Publisher {
    store: Arc<dyn ObjectStore>,
    longest_name: usize,
}

impl Publisher {
    /// Publishes `intent` and returns where. The name carries the moves (base64url JSON) when
    /// they fit, so that listers can tell whether to carry an intent without reading it (one
    /// Kinesis shard's move takes about 270 characters: on S3 it fits, on a local disk not).
    pub async fn publish(&self, intent: &Intent) -> Result<Path, IntentError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let moves = serde_json::to_vec(&intent.moves).map(|json| URL_SAFE_NO_PAD.encode(json)).unwrap_or_default();
        let with_moves = format!("{id}.{moves}.json");
        let name =
            if moves.is_empty() || with_moves.len() > self.longest_name { format!("{id}.json") } else { with_moves };
        let path = Path::from(format!("{INTENTS_DIR}/{name}"));
        let body = serde_json::to_vec(intent).map_err(|e| IntentError::Unreadable(path.to_string(), e.to_string()))?;
        self.store.put(&path, PutPayload::from(body)).await.map_err(|e| IntentError::Store(path.to_string(), e))?;
        Ok(path)
    }
}

/// The moves an intent's file name `<id>.<base64url moves>.json` carries.
fn moves_in_name(name: &str) -> Option<Vec<Move>> {
    let encoded = name.strip_suffix(".json")?.split_once('.')?.1;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()
}

fn parse(path: &Path, bytes: &[u8]) -> Option<Arc<Intent>> {
    match serde_json::from_slice::<Intent>(bytes) {
        Ok(intent) => Some(Arc::new(intent)),
        Err(error) => {
            tracing::warn!(%path, %error, "an unreadable intent; it is never carried");
            None
        }
    }
}

/// The intents in `store` and their ages, oldest first.
async fn list_with_ages(store: &Arc<dyn ObjectStore>) -> Result<Vec<(Path, Duration)>, IntentError> {
    let prefix = Path::from(INTENTS_DIR);
    let mut metas: Vec<object_store::ObjectMeta> =
        store.list(Some(&prefix)).try_collect().await.map_err(|e| IntentError::Store(prefix.to_string(), e))?;
    metas.sort_by_key(|m| m.last_modified);
    let now = chrono::Utc::now();
    Ok(metas.into_iter().map(|m| (m.location, (now - m.last_modified).to_std().unwrap_or_default())).collect())
}

/// Deletes the intents of the table whose root `store` is that are older than
/// [`ABANDONED_AFTER`], and returns how many. Any such intent is either stale or waited on by
/// nobody; deleting it only means its batch is not committed by another writer, and that
/// batch's redelivery writes it (see the module docs).
pub async fn sweep(store: Arc<dyn ObjectStore>) -> Result<usize, IntentError> {
    let old: Vec<Path> = list_with_ages(&store)
        .await?
        .into_iter()
        .filter(|(_, age)| *age >= ABANDONED_AFTER)
        .map(|(path, _)| path)
        .collect();
    let n = old.len();
    for path in old {
        store.delete(&path).await.map_err(|e| IntentError::Store(path.to_string(), e))?;
    }
    Ok(n)
}

/// Why intents could not be published or listed. Never fatal to an append: it then commits
/// its own batch alone.
#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    #[error("{0}: {1}")]
    Store(String, object_store::Error),
    #[error("{0}: {1}")]
    Unreadable(String, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kinesis_shards_move_fits_in_the_intents_name_and_reads_back() {
        let moves = vec![Move {
            key: SourceKey::Sequence("kinesis/streaming-0a1b2c3d4e5f-geo/shardId-000000000001".into()),
            from: Position::parse("49590338271490256608559692538361571095921575989136588898"),
            to: Position::parse("49590338271490256608559692538361571095921575989136589897").unwrap(),
        }];
        let encoded = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&moves).unwrap());
        let name = format!("{}.{encoded}.json", uuid::Uuid::new_v4().simple());
        let s3 = url::Url::parse("s3://bucket/lake/geo/").unwrap();
        assert!(name.len() <= longest_name(&s3), "{}", name.len());
        assert!(name.len() + INTENTS_DIR.len() + 100 < 1024, "the whole key stays within S3's limit");
        assert_eq!(moves_in_name(&name), Some(moves));
        assert_eq!(moves_in_name("0123abcd.json"), None, "a name without moves");
        assert_eq!(moves_in_name("0123abcd.bm90IGpzb24.json"), None, "a name whose moves are not JSON");
    }

    #[tokio::test]
    async fn a_published_intent_lists_with_its_moves_and_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let mut intents = Intents::new(store.clone(), 240);
        let intent = Intent {
            moves: vec![Move {
                key: SourceKey::Offset("kafka/t/0/7".into()),
                from: None,
                to: Position::parse("99").unwrap(),
            }],
            adds: vec![Add { path: "part-0.parquet".into(), size: 10, ..Default::default() }],
        };
        let path = intents.publisher().publish(&intent).await.unwrap();
        let listed = intents.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((&listed[0].path, listed[0].moves.as_ref()), (&path, Some(&intent.moves)));
        let read = intents.read(&[&path]).await.unwrap();
        let read = read[0].as_ref().expect("the intent reads back");
        assert_eq!(
            (read.moves.clone(), read.adds[0].path.clone()),
            (intent.moves.clone(), "part-0.parquet".to_string())
        );
        assert_eq!(sweep(store).await.unwrap(), 0, "a fresh intent is not swept");
    }

    #[tokio::test]
    async fn an_intent_whose_moves_do_not_fit_a_local_file_name_lists_without_them_and_reads_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let local = url::Url::from_directory_path(dir.path()).unwrap();
        let mut intents = Intents::new(store, longest_name(&local));
        let position = "49590338271490256608559692538361571095921575989136588898";
        let intent = Intent {
            moves: vec![Move {
                key: SourceKey::Sequence("kinesis/streaming-0a1b2c3d4e5f-geo/shardId-000000000001".into()),
                from: Position::parse(position),
                to: Position::parse(&format!("{position}1")).unwrap(),
            }],
            adds: vec![Add { path: "part-1.parquet".into(), ..Default::default() }],
        };
        let path = intents.publisher().publish(&intent).await.expect("a local disk takes the shorter name");
        let listed = intents.list().await.unwrap();
        assert_eq!((&listed[0].path, listed[0].moves.as_ref()), (&path, None));
        let read = intents.read(&[&path]).await.unwrap();
        assert_eq!(read[0].as_ref().map(|i| i.moves.clone()), Some(intent.moves));
    }
}
