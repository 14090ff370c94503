//! The Kinesis event Lambda hands the stream consumer, read in one pass from the invoke
//! payload's bytes.
//!
//! `aws_lambda_events`' `KinesisEvent` owns everything: per record seven strings, a decoded
//! `Vec<u8>` and a map of the fields it does not model, all allocated while the payload is
//! parsed, then copied again on their way to the sink and freed after. On a 10,000-record batch
//! that was a third of the warm invocation. A [`KinesisBatch`] instead borrows the few fields
//! the trigger reads (`eventID`, `eventSourceARN`, `sequenceNumber`, `data`,
//! `approximateArrivalTimestamp`) from the payload and skips the rest; only a JSON string with
//! escapes in it is copied. [`KinesisBatch::decode_data`] then base64-decodes every record's
//! data into one buffer.
//!
//! A typed `KinesisEvent` (the local runner, the tests, the benchmarks build one) is read into
//! the same [`KinesisBatch`] by [`KinesisBatch::from_event`], so the trigger has one path.
//!
//! Differences from `KinesisEvent`, on purpose:
//! - `approximateArrivalTimestamp` is read as the decimal number of seconds it is:
//!   `KinesisEvent` takes the digits after the point as milliseconds, so `…921.84` arrives at
//!   84 ms past the second rather than 840 ms (and more than three digits fail the event).
//! - A record whose `data` is not base64 does not fail the whole event: the trigger
//!   quarantines it (see [`RecordData`]), as it does any other unreadable record.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::json::Text;

/// The payload is not a Kinesis event Lambda would send: not JSON, no `Records` array, a
/// record without `kinesis.data` or `kinesis.approximateArrivalTimestamp`, or a field of the
/// wrong type. Lambda is then answered with an invocation error, as the runtime did when its
/// own parse of the payload failed.
#[derive(Debug, thiserror::Error)]
#[error("the invoke payload is not a Kinesis event: {0}")]
pub struct EventError(#[from] serde_json::Error);

/// The data of one record, as the event holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData<'a> {
    /// Base64 text, borrowed from the payload (owned only when the JSON string had escapes).
    Base64(Cow<'a, str>),
    /// Already decoded, by a typed `KinesisEvent`.
    Decoded(&'a [u8]),
}

/// One record of a Kinesis event: what the trigger reads of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord<'a> {
    /// `eventID`: `<shardId>:<sequenceNumber>`.
    pub event_id: Option<Cow<'a, str>>,
    /// `eventSourceARN`: the stream's ARN, ending in `stream/<name>`.
    pub event_source_arn: Option<Cow<'a, str>>,
    /// `kinesis.sequenceNumber` (empty when absent, as in `KinesisEvent`).
    pub sequence_number: Cow<'a, str>,
    pub data: RecordData<'a>,
    /// `kinesis.approximateArrivalTimestamp`.
    pub arrived_at: DateTime<Utc>,
}

/// The records of one Kinesis event, in delivery order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KinesisBatch<'a> {
    pub records: Vec<EventRecord<'a>>,
}

/// A record's data that is not base64: what the payload held, and why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableData<'b> {
    pub text: &'b str,
    pub reason: String,
}

impl<'a> KinesisBatch<'a> {
    /// Reads the event from the invoke payload, borrowing from it.
    pub fn parse(payload: &'a [u8]) -> Result<Self, EventError> {
        // UTF-8 is checked once for the whole payload, which is quicker than serde_json's check
        // of each string apart; a payload that is not UTF-8 is parsed from its bytes, for the error.
        let event: WireEvent<'a> = match simdutf8::basic::from_utf8(payload) {
            Ok(text) => serde_json::from_str(text)?,
            Err(_) => serde_json::from_slice(payload)?,
        };
        Ok(KinesisBatch { records: event.records.into_iter().map(WireRecord::into_record).collect() })
    }

    /// The same batch from a typed event, borrowing from it.
    pub fn from_event(event: &'a KinesisEvent) -> Self {
        let records = event
            .records
            .iter()
            .map(|r| EventRecord {
                event_id: r.event_id.as_deref().map(Cow::Borrowed),
                event_source_arn: r.event_source_arn.as_deref().map(Cow::Borrowed),
                sequence_number: Cow::Borrowed(&r.kinesis.sequence_number),
                data: RecordData::Decoded(r.kinesis.data.as_slice()),
                arrived_at: r.kinesis.approximate_arrival_timestamp.0,
            })
            .collect();
        KinesisBatch { records }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record's data, decoded: base64 text into `buffer` (cleared first, and sized once
    /// for the whole batch so it never grows while decoding), decoded data as it is. One entry
    /// per record, in order.
    pub fn decode_data<'b>(&'b self, buffer: &'b mut Vec<u8>) -> Vec<Result<&'b [u8], UnreadableData<'b>>> {
        buffer.clear();
        let estimate: usize = self
            .records
            .iter()
            .map(|r| match &r.data {
                RecordData::Base64(text) => base64::decoded_len_estimate(text.len()),
                RecordData::Decoded(_) => 0,
            })
            .sum();
        buffer.reserve(estimate);
        // Spans first: the buffer cannot be borrowed for the slices while it is still written.
        let spans: Vec<Option<Result<Range<usize>, String>>> = self
            .records
            .iter()
            .map(|r| match &r.data {
                RecordData::Base64(text) => {
                    let start = buffer.len();
                    // The SIMD decoder is as strict as `STANDARD` (padding, canonical trailing
                    // bits); data it refuses is decoded again by `STANDARD`, whose answer stands
                    // and whose error names the fault.
                    if base64_simd::STANDARD.decode_append(text.as_bytes(), buffer).is_ok() {
                        return Some(Ok(start..buffer.len()));
                    }
                    buffer.truncate(start);
                    Some(match STANDARD.decode_vec(text.as_bytes(), buffer) {
                        Ok(()) => Ok(start..buffer.len()),
                        Err(e) => {
                            buffer.truncate(start);
                            Err(format!("kinesis data is not base64: {e}"))
                        }
                    })
                }
                RecordData::Decoded(_) => None,
            })
            .collect();
        let buffer: &'b [u8] = buffer;
        self.records
            .iter()
            .zip(spans)
            .map(|(record, span)| match (&record.data, span) {
                (RecordData::Decoded(data), _) => Ok(*data),
                (_, Some(Ok(range))) => Ok(&buffer[range]),
                (RecordData::Base64(text), Some(Err(reason))) => Err(UnreadableData { text, reason }),
                (RecordData::Base64(_), None) => unreachable!("every base64 record has a span"),
            })
            .collect()
    }
}

// The payload's shape, only the fields read; serde skips the others without allocating.

#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<WireRecord<'a>>,
}

#[derive(Deserialize)]
struct WireRecord<'a> {
    #[serde(rename = "eventID", default, borrow)]
    event_id: Option<Text<'a>>,
    #[serde(rename = "eventSourceARN", default, borrow)]
    event_source_arn: Option<Text<'a>>,
    #[serde(borrow)]
    kinesis: WireKinesis<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireKinesis<'a> {
    #[serde(default, borrow)]
    sequence_number: Option<Text<'a>>,
    #[serde(borrow)]
    data: Text<'a>,
    approximate_arrival_timestamp: Seconds,
}

impl<'a> WireRecord<'a> {
    fn into_record(self) -> EventRecord<'a> {
        EventRecord {
            event_id: self.event_id.map(|t| t.0),
            event_source_arn: self.event_source_arn.map(|t| t.0),
            sequence_number: self.kinesis.sequence_number.map_or(Cow::Borrowed(""), |t| t.0),
            data: RecordData::Base64(self.kinesis.data.0),
            arrived_at: self.kinesis.approximate_arrival_timestamp.0,
        }
    }
}

/// Seconds since the Unix epoch, with a fraction: a number as Lambda sends it, or its decimal
/// text as `KinesisEvent` serialises it.
struct Seconds(DateTime<Utc>);

impl Seconds {
    fn at<E: de::Error>(seconds: f64) -> Result<Self, E> {
        // Microseconds, rounded: Kinesis' milliseconds come back exact from the f64.
        let micros = (seconds * 1e6).round();
        if !micros.is_finite() || micros < 0.0 || micros > i64::MAX as f64 {
            return Err(E::custom(format!("approximateArrivalTimestamp {seconds} is not a time")));
        }
        DateTime::from_timestamp_micros(micros as i64)
            .map(Seconds)
            .ok_or_else(|| E::custom(format!("approximateArrivalTimestamp {seconds} is not a time")))
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecondsVisitor;
        impl Visitor<'_> for SecondsVisitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("seconds since the Unix epoch, a number or its decimal text")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                Seconds::at(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Seconds::at(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                Seconds::at(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                let seconds: f64 = v
                    .trim()
                    .parse()
                    .map_err(|_| E::custom(format!("approximateArrivalTimestamp {v:?} is not a number")))?;
                Seconds::at(seconds)
            }
        }
        deserializer.deserialize_any(SecondsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn events_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
    }

    /// One record: eventID, eventSourceARN, sequenceNumber, data decoded, arrival.
    type Flat = (Option<String>, Option<String>, String, Vec<u8>, DateTime<Utc>);

    /// The batch `KinesisEvent` reads, with the data decoded.
    fn typed(payload: &[u8]) -> Vec<Flat> {
        let event: KinesisEvent = serde_json::from_slice(payload).expect("KinesisEvent reads it");
        let batch = KinesisBatch::from_event(&event);
        flatten(&batch)
    }

    fn flatten(batch: &KinesisBatch<'_>) -> Vec<Flat> {
        let mut buffer = Vec::new();
        let data = batch.decode_data(&mut buffer);
        batch
            .records
            .iter()
            .zip(data)
            .map(|(r, d)| {
                (
                    r.event_id.as_deref().map(str::to_string),
                    r.event_source_arn.as_deref().map(str::to_string),
                    r.sequence_number.to_string(),
                    d.expect("base64").to_vec(),
                    r.arrived_at,
                )
            })
            .collect()
    }

    fn read(payload: &[u8]) -> Vec<Flat> {
        flatten(&KinesisBatch::parse(payload).expect("a Kinesis event"))
    }

    #[test]
    fn the_sample_events_read_as_kinesis_event_reads_them() {
        for name in ["kinesis-pin.json", "kinesis-geo.json", "kinesis-user.json"] {
            let payload = std::fs::read(events_dir().join(name)).unwrap();
            let (ours, theirs) = (read(&payload), typed(&payload));
            assert_eq!(ours.len(), theirs.len(), "{name}");
            assert!(!ours.is_empty(), "{name}");
            for (a, b) in ours.iter().zip(&theirs) {
                assert_eq!((&a.0, &a.1, &a.2, &a.3), (&b.0, &b.1, &b.2, &b.3), "{name}");
                // The same second; KinesisEvent takes `.84` as 84 ms (see the module's doc).
                assert_eq!(a.4.timestamp(), b.4.timestamp(), "{name}");
            }
        }
    }

    #[test]
    fn arrival_times_are_decimal_seconds() {
        let event = |at: &str| {
            format!(
                r#"{{"Records":[{{"kinesis":{{"data":"e30=","sequenceNumber":"1","approximateArrivalTimestamp":{at}}}}}]}}"#
            )
        };
        let at = |text: &str| KinesisBatch::parse(event(text).as_bytes()).unwrap().records[0].arrived_at;
        let expected = Utc.timestamp_millis_opt(1_764_061_921_840).unwrap();
        assert_eq!(at("1764061921.84"), expected);
        assert_eq!(at("\"1764061921.840\""), expected);
        assert_eq!(at("1764061921"), Utc.timestamp_opt(1_764_061_921, 0).unwrap());
        assert_eq!(at("1764061921.522"), Utc.timestamp_millis_opt(1_764_061_921_522).unwrap());
        // Where KinesisEvent agrees (three digits), the same instant.
        let payload = event("1764061921.522");
        assert_eq!(read(payload.as_bytes()), typed(payload.as_bytes()));
    }

    #[test]
    fn escaped_strings_read_as_their_text() {
        // `\/` is legal JSON for `/`, and base64 has slashes; every field may be escaped.
        let data = STANDARD.encode([0xffu8, 0xff, 0xfe, 0x3f, 0xbf]);
        assert!(data.contains('/'), "{data}");
        let payload = format!(
            r#"{{"Records":[{{"eventID":"shard\u002d0:0\u0031","eventSourceARN":"arn:aws:kinesis:r:1:stream\/s","kinesis":{{"data":"{}","sequenceNumber":"0\u0031","partitionKey":"k\"q","approximateArrivalTimestamp":1.5}}}}]}}"#,
            data.replace('/', "\\/")
        );
        let batch = KinesisBatch::parse(payload.as_bytes()).unwrap();
        let record = &batch.records[0];
        assert_eq!(record.event_id.as_deref(), Some("shard-0:01"));
        assert_eq!(record.event_source_arn.as_deref(), Some("arn:aws:kinesis:r:1:stream/s"));
        assert_eq!(record.sequence_number, "01");
        assert!(matches!(record.data, RecordData::Base64(Cow::Owned(_))));
        assert_eq!(read(payload.as_bytes())[0].3, vec![0xff, 0xff, 0xfe, 0x3f, 0xbf]);
        let theirs = typed(payload.as_bytes());
        assert_eq!(read(payload.as_bytes())[0].0, theirs[0].0);
        assert_eq!(read(payload.as_bytes())[0].3, theirs[0].3);
    }

    #[test]
    fn unescaped_strings_are_borrowed() {
        let payload = std::fs::read(events_dir().join("kinesis-pin.json")).unwrap();
        let batch = KinesisBatch::parse(&payload).unwrap();
        for record in &batch.records {
            assert!(matches!(record.data, RecordData::Base64(Cow::Borrowed(_))));
            assert!(matches!(record.sequence_number, Cow::Borrowed(_)));
        }
    }

    #[test]
    fn absent_optional_fields_read_as_kinesis_event_reads_them() {
        let payload = br#"{"Records":[{"kinesis":{"data":"","approximateArrivalTimestamp":0}}],"other":1}"#;
        assert_eq!(read(payload), typed(payload));
        assert_eq!(read(payload)[0].2, "");
        assert_eq!(read(br#"{"Records":[]}"#), vec![]);
    }

    #[test]
    fn data_that_is_not_base64_is_unreadable_not_an_error() {
        let payload = br#"{"Records":[{"kinesis":{"data":"not base64!","approximateArrivalTimestamp":0}},
            {"kinesis":{"data":"e30=","approximateArrivalTimestamp":0}}]}"#;
        let batch = KinesisBatch::parse(payload).unwrap();
        let mut buffer = Vec::new();
        let data = batch.decode_data(&mut buffer);
        let bad = data[0].as_ref().unwrap_err();
        assert_eq!(bad.text, "not base64!");
        assert!(bad.reason.starts_with("kinesis data is not base64"), "{}", bad.reason);
        assert_eq!(data[1].as_deref(), Ok(&b"{}"[..]));
    }

    #[test]
    fn data_decodes_exactly_as_the_standard_base64_engine_decodes_it() {
        let texts = [
            "",
            "e30=",
            "e30",
            "e3==",
            "e31=",
            "====",
            "A===",
            "AB==",
            "AB=A",
            "ABC=",
            "ABD=",
            "Zm9v",
            "Zm9vYg==",
            "Zm9vYh==",
            "Zm9vYmE=",
            "Zm9vYmF=",
            " e30=",
            "e30=\\n",
            "e30=e30=",
            "Zm9vYmFy-_==",
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODkrLw==",
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODkrLw=",
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODkrL!==",
        ];
        let records: Vec<String> = texts
            .iter()
            .map(|t| format!(r#"{{"kinesis":{{"data":"{t}","approximateArrivalTimestamp":0}}}}"#))
            .collect();
        let payload = format!(r#"{{"Records":[{}]}}"#, records.join(","));
        let batch = KinesisBatch::parse(payload.as_bytes()).unwrap();
        let mut buffer = Vec::new();
        let data = batch.decode_data(&mut buffer);
        for ((text, ours), record) in texts.iter().zip(&data).zip(&batch.records) {
            let RecordData::Base64(sent) = &record.data else { unreachable!("parsed data is base64") };
            match (ours, STANDARD.decode(sent.as_bytes())) {
                (Ok(ours), Ok(theirs)) => assert_eq!(*ours, &theirs[..], "{text:?}"),
                (Err(ours), Err(theirs)) => assert_eq!(ours.reason, format!("kinesis data is not base64: {theirs}")),
                (ours, theirs) => panic!("{text:?}: decoded as {ours:?}, the base64 engine says {theirs:?}"),
            }
        }
    }

    #[test]
    fn a_payload_that_is_not_utf8_is_refused_as_serde_json_refuses_it() {
        let payload = b"{\"Records\":[{\"kinesis\":{\"data\":\"\xff\",\"approximateArrivalTimestamp\":0}}]}";
        let error = KinesisBatch::parse(payload).unwrap_err().to_string();
        let theirs = serde_json::from_slice::<serde_json::Value>(payload).unwrap_err().to_string();
        assert!(error.ends_with(&theirs), "{error} / {theirs}");
    }

    #[test]
    fn malformed_events_are_a_clear_error() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "EOF while parsing"),
            (br#""Records""#, "invalid type: string"),
            (b"{}", "missing field `Records`"),
            (br#"{"Records":[{"kinesis":{"approximateArrivalTimestamp":0}}]}"#, "missing field `data`"),
            (br#"{"Records":[{"kinesis":{"data":""}}]}"#, "missing field `approximateArrivalTimestamp`"),
            (br#"{"Records":[{"kinesis":{"data":7,"approximateArrivalTimestamp":0}}]}"#, "invalid type: integer `7`"),
            (br#"{"Records":[{"kinesis":{"data":"","approximateArrivalTimestamp":"soon"}}]}"#, "is not a number"),
        ];
        for (payload, expected) in cases {
            let error = KinesisBatch::parse(payload).unwrap_err().to_string();
            assert!(error.starts_with("the invoke payload is not a Kinesis event: "), "{error}");
            assert!(error.contains(expected), "{}: {error}", String::from_utf8_lossy(payload));
            assert!(serde_json::from_slice::<KinesisEvent>(payload).is_err());
        }
        let error = KinesisBatch::parse(br#"{"Records":[{"kinesis":{"data":"","approximateArrivalTimestamp":-1}}]}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not a time"), "{error}");
    }

    #[test]
    fn a_batch_the_emulator_builds_reads_the_same_both_ways() {
        use crate::local::events::{KinesisDelivery, kinesis_event, sequence_number};
        let data: Vec<Vec<u8>> =
            (0..50).map(|i| format!(r#"{{"ind": {i}, "note": "caf\u00e9 /"}}"#).into_bytes()).collect();
        let sequences: Vec<String> = (0..50).map(sequence_number).collect();
        let deliveries: Vec<KinesisDelivery<'_>> = data
            .iter()
            .zip(&sequences)
            .map(|(data, seq)| KinesisDelivery {
                shard_id: "shardId-000000000001",
                sequence_number: seq,
                partition_key: "k",
                data,
            })
            .collect();
        // Serialised by KinesisEvent itself: the timestamp as a string, as the benchmarks' events.
        let payload = serde_json::to_vec(&kinesis_event("us-east-1", "1", "s", &deliveries)).unwrap();
        assert_eq!(read(&payload), typed(&payload));
        assert_eq!(read(&payload)[7].3, data[7]);
    }
}
