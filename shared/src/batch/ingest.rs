//! Ingesting objects: their records read, grouped per table and committed in chunks through
//! each table's [`TableSink`], exactly once.

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::s3::S3Event;

use super::{
    ConnectObject, ObjectRecord, ObjectRef, ObjectSource, RecordReader, Skip, SourceError, objects_of, parse_key,
};
use crate::Table;
use crate::lake::{Lake, Position, SourceKey};
use crate::schema::Origin;
use crate::sink::{BatchSummary, SinkError, SourceRecord, TableSink, TableTotals};

/// The function name the batch ingest's metrics carry.
const FUNCTION: &str = "batch-ingest";

/// How much the batch path commits at once, per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Records per commit.
    pub records: usize,
    /// Raw bytes per commit.
    pub bytes: usize,
}

impl Default for BatchLimits {
    /// About what one Kinesis batch holds: a few MB, a few thousand rows, one Parquet file.
    fn default() -> Self {
        Self { records: 10_000, bytes: 32 << 20 }
    }
}

/// What one ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub objects_read: usize,
    pub skipped: Vec<Skip>,
    pub tables: std::collections::BTreeMap<Table, TableTotals>,
}

impl IngestSummary {
    /// The summary as the Lambda's answer: objects read, skips with reasons, totals per table.
    pub fn to_json(&self) -> serde_json::Value {
        let tables: serde_json::Map<String, serde_json::Value> = self
            .tables
            .iter()
            .map(|(table, t)| {
                let totals = serde_json::json!({
                    "records_in": t.records_in, "rows_written": t.rows_written,
                    "already_committed": t.already_committed, "quarantined": t.quarantined, "commits": t.commits,
                    "rows_with_rescued_fields": t.rows_with_rescued_fields,
                    "freshness_p50_ms": t.record_ages.p50_ms(), "freshness_max_ms": t.record_ages.max_ms(),
                });
                (table.name().to_string(), totals)
            })
            .collect();
        serde_json::json!({
            "objects_read": self.objects_read,
            "skipped": self.skipped.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
            "tables": tables,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("reading s3://{bucket}/{key}: {source}")]
    Read { bucket: String, key: String, source: std::io::Error },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// The batch ingest: Kafka Connect objects in, exactly-once commits to the tables out.
pub struct BatchIngest {
    prefix: String,
    source: Arc<dyn ObjectSource>,
    sinks: Vec<TableSink>,
    limits: BatchLimits,
}

/// A record read and waiting for its chunk's commit.
struct Pending {
    key: SourceKey,
    position: Position,
    origin: Origin,
    raw: ObjectRecord,
    /// When its object was written: the batch path's freshness counts from there.
    arrived_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl BatchIngest {
    /// Ingests the topics `<prefix>.pin|geo|user` from `source` into `lake`.
    pub fn new(prefix: impl Into<String>, lake: Lake, source: Arc<dyn ObjectSource>) -> Self {
        let sinks = Table::ALL.iter().map(|t| TableSink::new(*t, lake.clone())).collect();
        Self { prefix: prefix.into(), source, sinks, limits: BatchLimits::default() }
    }

    pub fn with_limits(mut self, limits: BatchLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Handles an S3 notification as the Lambda runtime delivers it, with a log line and
    /// metrics for the invocation. An error makes Lambda retry the event, which is safe.
    pub async fn handle_s3_event(&self, event: &S3Event) -> Result<IngestSummary, IngestError> {
        let started = Instant::now();
        let (objects, skipped) = objects_of(event);
        let result = self.ingest(&objects).await;
        let elapsed = started.elapsed();
        let elapsed_ms = elapsed.as_secs_f64() * 1e3;
        match &result {
            Ok(summary) => {
                for skip in &skipped {
                    tracing::warn!(reason = %skip, "notification record skipped");
                }
                for (table, totals) in &summary.tables {
                    totals.emit(FUNCTION, table.name(), elapsed);
                    tracing::info!(
                        table = %table,
                        records_in = totals.records_in,
                        rows_written = totals.rows_written,
                        already_committed = totals.already_committed,
                        quarantined = totals.quarantined,
                        commits = totals.commits,
                        rows_with_rescued_fields = totals.rows_with_rescued_fields,
                        freshness_p50_ms = totals.record_ages.p50_ms(),
                        freshness_max_ms = totals.record_ages.max_ms(),
                        "objects committed"
                    );
                }
                tracing::info!(
                    objects = objects.len(),
                    objects_read = summary.objects_read,
                    skipped = summary.skipped.len() + skipped.len(),
                    duration_ms = elapsed_ms as u64,
                    "notification ingested"
                );
            }
            Err(error) => {
                tracing::error!(objects = objects.len(), %error, "ingest failed; Lambda will retry the notification");
                crate::metrics::emit_batch_failure(FUNCTION, "all");
            }
        }
        result.map(|mut summary| {
            summary.skipped.extend(skipped);
            summary
        })
    }

    /// Reads `objects` and commits their records, each table in as few commits as its
    /// [`BatchLimits`] allow. Objects that are not this deployment's Kafka Connect JSON are
    /// skipped with the reason.
    pub async fn ingest(&self, objects: &[ObjectRef]) -> Result<IngestSummary, IngestError> {
        let mut summary = IngestSummary::default();
        let mut by_table: Vec<Vec<(&ObjectRef, ConnectObject)>> = vec![Vec::new(); Table::ALL.len()];
        for object in objects {
            match parse_key(&self.prefix, &object.key) {
                Ok(connect) => by_table[table_index(connect.table)].push((object, connect)),
                Err(skip) => {
                    tracing::warn!(bucket = %object.bucket, reason = %skip, "object skipped");
                    summary.skipped.push(skip);
                }
            }
        }
        for (sink, objects) in self.sinks.iter().zip(by_table) {
            if objects.is_empty() {
                continue;
            }
            let totals = summary.tables.entry(sink.table()).or_default();
            let mut chunk: Vec<Pending> = Vec::new();
            let mut chunk_bytes = 0usize;
            for (object, connect) in objects {
                let Some(opened) = self.source.open(object).await? else {
                    let skip = Skip(format!("{}: the object no longer exists", object.key));
                    tracing::warn!(bucket = %object.bucket, reason = %skip, "object skipped");
                    summary.skipped.push(skip);
                    continue;
                };
                summary.objects_read += 1;
                let mut reader = RecordReader::new(opened.body, connect.gzip);
                let key = connect.source_key();
                let source = self.source.locate(object);
                let read_error =
                    |source| IngestError::Read { bucket: object.bucket.clone(), key: object.key.clone(), source };
                let mut offset = connect.start_offset;
                while let Some(raw) = reader.next_record().await.map_err(read_error)? {
                    chunk_bytes += raw.bytes.len();
                    chunk.push(Pending {
                        key: key.clone(),
                        position: Position::parse(&offset.to_string()).expect("an offset is a decimal"),
                        origin: Origin { source: source.clone(), position: raw.line.to_string() },
                        raw,
                        arrived_at: opened.last_modified,
                    });
                    offset += 1;
                    if chunk.len() >= self.limits.records || chunk_bytes >= self.limits.bytes {
                        totals.add(&commit(sink, &mut chunk).await?);
                        chunk_bytes = 0;
                    }
                }
            }
            if !chunk.is_empty() {
                totals.add(&commit(sink, &mut chunk).await?);
            }
        }
        Ok(summary)
    }
}

fn table_index(table: Table) -> usize {
    Table::ALL.iter().position(|t| *t == table).expect("every table is in Table::ALL")
}

/// Commits a chunk through the table's sink (clean rows and quarantine, exactly once) and
/// empties it.
async fn commit(sink: &TableSink, chunk: &mut Vec<Pending>) -> Result<BatchSummary, SinkError> {
    let records = chunk
        .iter()
        .map(|p| SourceRecord {
            key: p.key.clone(),
            position: p.position.clone(),
            origin: p.origin.clone(),
            data: &p.raw.bytes,
            unreadable: p.raw.unreadable.clone(),
            arrived_at: p.arrived_at,
        })
        .collect();
    let summary = sink.consume(records).await?;
    chunk.clear();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::LocalObjects;

    fn pin(ind: i64) -> String {
        serde_json::json!({"index": ind, "unique_id": format!("u{ind}"), "title": "t", "description": "d",
            "follower_count": "12k", "poster_name": "p", "tag_list": "a,b", "is_image_or_video": "image",
            "image_src": "http://x/y.png", "save_location": "Local save in /data/x", "category": "art",
            "downloaded": 1})
        .to_string()
    }

    async fn write(root: &std::path::Path, key: &str, content: &str) -> ObjectRef {
        let path = root.join(key);
        tokio::fs::create_dir_all(path.parent().unwrap()).await.unwrap();
        tokio::fs::write(&path, content).await.unwrap();
        ObjectRef { bucket: "local".into(), key: key.into() }
    }

    #[tokio::test]
    async fn objects_land_once_in_one_commit_per_table_and_bad_lines_in_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("raw");
        let lake = Lake::new(dir.path().join("lake").to_string_lossy().into_owned());
        let a = write(&files, "topics/p.pin/partition=0/p.pin+0+0000000000.json", &format!("{}\n{}\n", pin(1), pin(2)))
            .await;
        let b = write(&files, "topics/p.pin/partition=1/p.pin+1+0000000005.json", &format!("[{}, 7]", pin(3))).await;
        let c = write(&files, "topics/p.pin/partition=0/p.pin+0+0000000002.json", "not json\n").await;
        let other =
            ObjectRef { bucket: "local".into(), key: "topics/q.pin/partition=0/q.pin+0+0000000000.json".into() };
        let gone = ObjectRef { bucket: "local".into(), key: "topics/p.pin/partition=0/p.pin+0+0000000009.json".into() };
        let ingest = BatchIngest::new("p", lake.clone(), Arc::new(LocalObjects::new(&files)));
        let objects = vec![a, b, c, other, gone];

        let first = ingest.ingest(&objects).await.unwrap();
        let pin_totals = &first.tables[&Table::Pin];
        assert_eq!((first.objects_read, first.skipped.len()), (3, 2));
        assert_eq!(
            (pin_totals.records_in, pin_totals.rows_written, pin_totals.quarantined, pin_totals.commits),
            (5, 3, 2, 2)
        );
        assert_eq!(lake.count_rows("pin").await.unwrap(), Some(3));
        let quarantine = lake.read_all(crate::table::QUARANTINE_TABLE).await.unwrap().unwrap();
        assert_eq!(quarantine.num_rows(), 2);

        // The same notification again, and then each object alone: nothing more lands.
        let again = ingest.ingest(&objects).await.unwrap();
        assert_eq!(again.tables[&Table::Pin].already_committed, 5);
        assert_eq!(again.tables[&Table::Pin].commits, 0);
        for object in &objects {
            ingest.ingest(std::slice::from_ref(object)).await.unwrap();
        }
        assert_eq!(lake.count_rows("pin").await.unwrap(), Some(3));
        assert_eq!(lake.count_rows(crate::table::QUARANTINE_TABLE).await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn a_large_object_is_committed_in_chunks_and_a_retry_skips_the_chunks_that_landed() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("raw");
        let lake = Lake::new(dir.path().join("lake").to_string_lossy().into_owned());
        let lines: String = (0..25).map(|i| pin(i) + "\n").collect();
        let object = write(&files, "topics/p.pin/partition=0/p.pin+0+0000000100.json", &lines).await;
        let limits = BatchLimits { records: 10, bytes: usize::MAX };

        // A first delivery that stopped after two chunks: only the first 20 lines were there.
        let first20: String = lines.lines().take(20).map(|l| format!("{l}\n")).collect();
        write(&files, &object.key, &first20).await;
        let ingest = BatchIngest::new("p", lake.clone(), Arc::new(LocalObjects::new(&files))).with_limits(limits);
        assert_eq!(ingest.ingest(std::slice::from_ref(&object)).await.unwrap().tables[&Table::Pin].commits, 2);

        write(&files, &object.key, &lines).await;
        let retry = ingest.ingest(std::slice::from_ref(&object)).await.unwrap();
        let totals = &retry.tables[&Table::Pin];
        assert_eq!((totals.rows_written, totals.already_committed, totals.commits), (5, 20, 1));
        assert_eq!(lake.count_rows("pin").await.unwrap(), Some(25));
    }
}
