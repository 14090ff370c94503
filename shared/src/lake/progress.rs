//! Exactly-once progress: how far each source has landed in a table.
//!
//! Lambda delivers records at least once: a batch may come again after its commit landed (the
//! function timed out or crashed after committing), a retry may start mid-batch, and two
//! invocations may hold the same record. So every append records, *in the same Delta commit as
//! the rows*, how far it got in each source, and every append first skips what the table
//! already holds (see [`super::append`]).
//!
//! Progress lives in Delta `txn` actions (application transactions), which checkpoints keep and
//! the conflict checker understands. A `txn` version is an `i64`, but a Kinesis sequence number
//! is a decimal of up to 128 digits, so a position is stored as [`CHUNKS`] `txn` entries per
//! source (`<key>#0` .. `<key>#7`), each holding 16 digits of the zero-padded number, most
//! significant first. All chunks of a key are written together in every commit that advances
//! it, so any snapshot shows one consistent position. A source key is one shard of one stream
//! (`kinesis/<stream>/<shard>`); shards that split or merge get new shard ids, hence new keys, and
//! their sequence numbers only grow, so each key's position is monotone.
//!
//! The scheme assumes each shard is consumed in order, one batch at a time, as Lambda does with
//! `ParallelizationFactor: 1` (the template's setting). With a higher factor Lambda runs batches
//! of one shard concurrently, ordered only per partition key, and a later batch committing first
//! would make an earlier one look delivered: keep the factor at 1.
//!
//! Sources whose positions fit an `i64` (a Kafka offset) use [`SourceKey::Offset`]: one `txn`
//! entry whose app id is the key and whose version is the position.
//!
//! Each `txn` carries `lastUpdated`, so the table property
//! `delta.setTransactionRetentionDuration` (set when pinpipe creates a table, see
//! [`super::Lake::open_or_create`]) lets checkpoints drop the progress of sources that have been
//! silent for longer: closed shards after a reshard, Kafka Connect objects long landed.

use std::fmt;

use deltalake::DeltaTable;
use futures::future::try_join_all;

use super::LakeError;

/// How many `txn` entries hold one position: 8 × 16 digits = 128, Kinesis' longest.
pub const CHUNKS: usize = 8;
const CHUNK_DIGITS: usize = 16;
const MAX_DIGITS: usize = CHUNKS * CHUNK_DIGITS;

/// A position in a source, as a decimal of up to 128 digits (a Kinesis sequence number, a Kafka
/// offset). Ordered by value. Serialised as its decimal string (in group-commit intents), and
/// checked when read back.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Position(String);

impl From<Position> for String {
    fn from(position: Position) -> String {
        position.0
    }
}

impl TryFrom<String> for Position {
    type Error = String;

    fn try_from(s: String) -> Result<Position, String> {
        Position::parse(&s).ok_or_else(|| format!("{s:?} is not a position (a decimal of up to 128 digits)"))
    }
}

impl Position {
    /// Parses a decimal position; leading zeros are dropped.
    pub fn parse(s: &str) -> Option<Position> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = s.trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        (digits.len() <= MAX_DIGITS).then(|| Position(digits.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(super) fn to_chunks(&self) -> [i64; CHUNKS] {
        let padded = format!("{:0>width$}", self.0, width = MAX_DIGITS);
        std::array::from_fn(|i| {
            padded[i * CHUNK_DIGITS..(i + 1) * CHUNK_DIGITS].parse().expect("16 ASCII digits fit an i64")
        })
    }

    fn from_chunks(chunks: &[i64]) -> Option<Position> {
        let mut digits = String::with_capacity(MAX_DIGITS);
        for &chunk in chunks {
            if !(0..10i64.pow(CHUNK_DIGITS as u32)).contains(&chunk) {
                return None;
            }
            digits.push_str(&format!("{chunk:0>CHUNK_DIGITS$}"));
        }
        Position::parse(&digits)
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0.len(), &self.0).cmp(&(other.0.len(), &other.0))
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({})", self.0)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A source whose progress a table records, and how its positions are stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKey {
    /// Positions of up to 128 digits (Kinesis sequence numbers), in [`CHUNKS`] `txn` entries.
    Sequence(String),
    /// Positions that fit an `i64` (Kafka offsets), in one `txn` entry.
    Offset(String),
}

impl SourceKey {
    pub fn id(&self) -> &str {
        match self {
            SourceKey::Sequence(id) | SourceKey::Offset(id) => id,
        }
    }

    pub(super) fn app_ids(&self) -> Vec<String> {
        match self {
            SourceKey::Sequence(id) => (0..CHUNKS).map(|i| format!("{id}#{i}")).collect(),
            SourceKey::Offset(id) => vec![id.clone()],
        }
    }

    pub(super) fn encode(&self, position: &Position) -> Option<Vec<i64>> {
        match self {
            SourceKey::Sequence(_) => Some(position.to_chunks().to_vec()),
            SourceKey::Offset(_) => position.0.parse::<i64>().ok().map(|v| vec![v]),
        }
    }

    pub(super) fn decode(&self, versions: &[i64]) -> Option<Position> {
        match self {
            SourceKey::Sequence(_) => Position::from_chunks(versions),
            SourceKey::Offset(_) => versions.first().filter(|v| **v >= 0).and_then(|v| Position::parse(&v.to_string())),
        }
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The position the table has recorded for the source `key`, if any.
pub async fn committed_position(table: &DeltaTable, key: &SourceKey) -> Result<Option<Position>, LakeError> {
    let uri = table.table_url().to_string();
    let delta = |source| LakeError::Delta { uri: uri.clone(), source };
    let snapshot = table.snapshot().map_err(delta)?;
    let log_store = table.log_store();
    let lookups = key.app_ids().into_iter().map(|app_id| snapshot.transaction_version(log_store.as_ref(), app_id));
    let versions: Vec<Option<i64>> = try_join_all(lookups).await.map_err(delta)?;
    if versions.iter().all(Option::is_none) {
        return Ok(None);
    }
    let unreadable =
        |detail: &str| LakeError::Progress { uri: uri.clone(), key: key.to_string(), detail: detail.to_string() };
    let versions: Vec<i64> =
        versions.into_iter().collect::<Option<_>>().ok_or_else(|| unreadable("some chunks are missing"))?;
    key.decode(&versions).map(Some).ok_or_else(|| unreadable("a version is out of range"))
}

/// One item to append, with the source key and position it came from.
#[derive(Debug, Clone)]
pub struct Marked<T> {
    pub key: SourceKey,
    pub position: Position,
    pub item: T,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_compare_by_value_not_by_text() {
        let p = |s| Position::parse(s).unwrap();
        assert!(p("10") > p("9"));
        assert!(p("0009") < p("10"));
        assert_eq!(p("007"), p("7"));
        let kinesis = "49590338271490256608559692538361571095921575989136588898";
        assert!(p(kinesis) > p("49590338271490256608559692538361571095921575989136588897"));
        assert_eq!(Position::parse(""), None);
        assert_eq!(Position::parse("12a"), None);
        assert_eq!(Position::parse(&"9".repeat(129)), None);
        assert!(Position::parse(&"9".repeat(128)).is_some());
    }

    #[test]
    fn positions_round_trip_through_txn_chunks() {
        for s in
            ["0", "1", "49590338271490256608559692538361571095921575989136588898", &"9".repeat(128), "1000000000000000"]
        {
            let p = Position::parse(s).unwrap();
            let chunks = p.to_chunks();
            assert!(chunks.iter().all(|c| *c >= 0));
            assert_eq!(Position::from_chunks(&chunks), Some(p), "{s}");
        }
        assert_eq!(Position::from_chunks(&[-1, 0, 0, 0, 0, 0, 0, 0]), None);
    }
}
