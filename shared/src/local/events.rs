//! Builders of the events Lambda delivers, for the local runner, benchmarks, samples and tests.

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine as _;

/// One record as Kinesis delivers it to Lambda.
#[derive(Debug, Clone)]
pub struct KinesisDelivery<'a> {
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    pub partition_key: &'a str,
    pub data: &'a [u8],
}

/// The `KinesisEvent` Lambda would deliver for these records of `stream`.
pub fn kinesis_event(region: &str, account: &str, stream: &str, records: &[KinesisDelivery<'_>]) -> KinesisEvent {
    let arn = format!("arn:aws:kinesis:{region}:{account}:stream/{stream}");
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64::engine::general_purpose::STANDARD.encode(r.data),
                    "approximateArrivalTimestamp": 1_700_000_000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", r.shard_id, r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": format!("arn:aws:iam::{account}:role/pinpipe-consumer"),
                "awsRegion": region,
                "eventSourceARN": arn,
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("a well-formed Kinesis event")
}

/// A Kinesis-like 56-digit sequence number, increasing with `n` (moto's are tiny).
pub fn sequence_number(n: u64) -> String {
    format!("4959033827149025660855969253836157109592157598{n:010}")
}
