//! The consumer's commit path as it was before issue 5's tuning: the clean rows' commit, then
//! the quarantine's, one after the other. Built from the same public pieces `TableSink` uses,
//! for the before/after figure of `scripts/bench.sh`.

use aws_lambda_events::event::kinesis::KinesisEvent;
use pinpipe::Table;
use pinpipe::clean::clean_bytes;
use pinpipe::lake::{Lake, Marked, Position, SourceKey, TableAppender};
use pinpipe::schema::{Origin, Quarantined, quarantine_batch, quarantine_schema, table_batch, table_schema};
use pinpipe::table::QUARANTINE_TABLE;

use crate::Error;

async fn open<'a>(
    lake: &Lake,
    slot: &'a mut Option<TableAppender>,
    name: &str,
    schema: deltalake::arrow::datatypes::SchemaRef,
) -> Result<&'a mut TableAppender, Error> {
    if slot.is_none() {
        *slot = Some(TableAppender::new(lake.open_or_create(name, &schema).await?)?);
    }
    Ok(slot.as_mut().expect("opened above"))
}

pub async fn consume(
    table: Table,
    lake: &Lake,
    handles: &mut (Option<TableAppender>, Option<TableAppender>),
    event: &KinesisEvent,
) -> Result<(), Error> {
    let mut rows = Vec::with_capacity(event.records.len());
    let mut rejected = Vec::new();
    for record in &event.records {
        let event_id = record.event_id.as_deref().unwrap_or("");
        let shard = event_id.split_once(':').map(|(s, _)| s).ok_or("eventID")?;
        let stream = record
            .event_source_arn
            .as_deref()
            .and_then(|arn| arn.rsplit_once(":stream/").map(|(_, name)| name))
            .ok_or("eventSourceARN")?;
        let sequence = &record.kinesis.sequence_number;
        let key = SourceKey::Sequence(format!("kinesis/{stream}/{shard}"));
        let position = Position::parse(sequence).ok_or("sequenceNumber")?;
        let origin = Origin { source: format!("kinesis:{stream}/{shard}"), position: sequence.clone() };
        let data = record.kinesis.data.as_slice();
        match clean_bytes(table, data) {
            Ok(clean) => rows.push(Marked { key, position, item: (clean, origin) }),
            Err(rejection) => rejected.push(Marked {
                key,
                position,
                item: Quarantined { table, origin, raw: data.to_vec(), reason: rejection.0 },
            }),
        }
    }
    let now = chrono::Utc::now().timestamp_micros();
    let metadata = |kind: &str, n: usize| {
        serde_json::json!({"pinpipe": {"table": table.name(), "kind": kind, "records_in": event.records.len(), "records": n}})
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    if !rows.is_empty() {
        let delta = open(lake, &mut handles.0, table.name(), table_schema(table)).await?;
        delta.append(&rows, metadata("rows", rows.len()), |fresh| Ok(table_batch(table, fresh, now)?)).await?;
    }
    if !rejected.is_empty() {
        let delta = open(lake, &mut handles.1, QUARANTINE_TABLE, quarantine_schema()).await?;
        delta
            .append(&rejected, metadata("quarantine", rejected.len()), |fresh| Ok(quarantine_batch(fresh, now)?))
            .await?;
    }
    Ok(())
}
