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

/// Where Lambda's event source mapping says a batch comes from: the stream's ARN, its region,
/// and the role the mapping reads the stream with (`invokeIdentityArn`, the function's role).
#[derive(Debug, Clone)]
pub struct KinesisSource<'a> {
    pub stream_arn: &'a str,
    pub region: &'a str,
    pub invoke_identity_arn: &'a str,
}

/// The ARN of stream `stream` in `region` of `account`.
pub fn stream_arn(region: &str, account: &str, stream: &str) -> String {
    format!("arn:aws:kinesis:{region}:{account}:stream/{stream}")
}

/// The `KinesisEvent` Lambda would deliver for these records of `stream`, all arrived at one
/// fixed time, read by a `pinpipe-consumer` role.
pub fn kinesis_event(region: &str, account: &str, stream: &str, records: &[KinesisDelivery<'_>]) -> KinesisEvent {
    let arn = stream_arn(region, account, stream);
    let role = format!("arn:aws:iam::{account}:role/pinpipe-consumer");
    let source = KinesisSource { stream_arn: &arn, region, invoke_identity_arn: &role };
    let records: Vec<(KinesisDelivery<'_>, f64)> = records.iter().map(|r| (r.clone(), 1_700_000_000.0)).collect();
    kinesis_source_event(&source, &records)
}

/// The `KinesisEvent` Lambda delivers for these records of `source`, each with its
/// `approximateArrivalTimestamp` (seconds since the Unix epoch, with a fraction, as Lambda sends it).
pub fn kinesis_source_event(source: &KinesisSource<'_>, records: &[(KinesisDelivery<'_>, f64)]) -> KinesisEvent {
    serde_json::from_value(kinesis_event_json(source, records)).expect("a well-formed Kinesis event")
}

/// The same event as the JSON Lambda sends. Send this rather than the serialised
/// [`KinesisEvent`], which writes `approximateArrivalTimestamp` as a string where Lambda
/// writes a number.
pub fn kinesis_event_json(source: &KinesisSource<'_>, records: &[(KinesisDelivery<'_>, f64)]) -> serde_json::Value {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|(r, arrival)| {
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64::engine::general_purpose::STANDARD.encode(r.data),
                    "approximateArrivalTimestamp": arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", r.shard_id, r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": source.invoke_identity_arn,
                "awsRegion": source.region,
                "eventSourceARN": source.stream_arn,
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// A Kinesis-like 56-digit sequence number, increasing with `n` (moto's are tiny).
pub fn sequence_number(n: u64) -> String {
    format!("4959033827149025660855969253836157109592157598{n:010}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_their_source_and_arrival_as_lambda_sends_them() {
        let source = KinesisSource {
            stream_arn: "arn:aws:kinesis:eu-west-1:111122223333:stream/s",
            region: "eu-west-1",
            invoke_identity_arn: "arn:aws:iam::111122223333:role/r",
        };
        let record = KinesisDelivery {
            shard_id: "shardId-000000000001",
            sequence_number: "42",
            partition_key: "k",
            data: b"{}",
        };
        let records = [(record, 1_764_061_921.522)];
        let event = kinesis_event_json(&source, &records);
        let typed = kinesis_source_event(&source, &records);
        assert_eq!(typed.records[0].kinesis.approximate_arrival_timestamp.timestamp_millis(), 1_764_061_921_522);
        let record = &event["Records"][0];
        assert_eq!(record["eventID"], "shardId-000000000001:42");
        assert_eq!(record["eventSourceARN"], "arn:aws:kinesis:eu-west-1:111122223333:stream/s");
        assert_eq!(record["invokeIdentityArn"], "arn:aws:iam::111122223333:role/r");
        assert_eq!(record["awsRegion"], "eu-west-1");
        assert_eq!(record["eventSource"], "aws:kinesis");
        assert_eq!(record["eventName"], "aws:kinesis:record");
        assert_eq!(record["kinesis"]["data"], "e30=");
        assert_eq!(record["kinesis"]["kinesisSchemaVersion"], "1.0");
        assert_eq!(record["kinesis"]["approximateArrivalTimestamp"].as_f64(), Some(1_764_061_921.522));
        assert!(kinesis_event("us-east-1", "123456789012", "s", &[]).records.is_empty());
    }
}
