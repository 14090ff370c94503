//! Test harness for pinpipe's integration tests: real AWS SDK clients pointed at the moto
//! server that `scripts/test.sh` starts on 127.0.0.1.

pub mod fault_proxy;

use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::{BehaviorVersion, SdkConfig};

/// The moto endpoint, or a panic that says how to get one.
pub fn endpoint() -> String {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if url.starts_with("http://127.0.0.1:") => url,
        Ok(url) => panic!("AWS_ENDPOINT_URL={url} is not a loopback moto server; run scripts/test.sh"),
        Err(_) => {
            panic!("AWS_ENDPOINT_URL is not set: run the integration tests with scripts/test.sh, which starts moto")
        }
    }
}

/// SDK configuration for moto: fake static credentials, a fixed region, the moto endpoint.
pub async fn sdk_config() -> SdkConfig {
    let creds = aws_sdk_s3::config::Credentials::new("pinpipe-test", "pinpipe-test", None, None, "pinpipe-tests");
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint())
        .load()
        .await
}

pub async fn s3_client() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&sdk_config().await).force_path_style(true).build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub async fn kinesis_client() -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&sdk_config().await)
}

/// A name no other test in this run uses, so tests share one moto server without interfering.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}{}", std::process::id() % 100_000, N.fetch_add(1, Ordering::Relaxed))
}

/// Creates a fresh bucket and returns its name.
pub async fn new_bucket() -> String {
    let bucket = unique("pinpipe-lake-");
    s3_client().await.create_bucket().bucket(&bucket).send().await.expect("create bucket in moto");
    bucket
}

/// Every row of a Delta table as one batch; `None` if the table does not exist.
pub async fn read_table(lake: &pinpipe::lake::Lake, name: &str) -> Option<deltalake::arrow::record_batch::RecordBatch> {
    lake.read_all(name).await.expect("table readable")
}

/// The Int64 column `name` of a batch, nulls as `None`.
pub fn int_column(batch: &deltalake::arrow::record_batch::RecordBatch, name: &str) -> Vec<Option<i64>> {
    use deltalake::arrow::array::{Array, Int64Array};
    let col = batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    let col = col.as_any().downcast_ref::<Int64Array>().unwrap_or_else(|| panic!("{name} is not Int64"));
    (0..col.len()).map(|i| col.is_valid(i).then(|| col.value(i))).collect()
}

/// The Utf8 column `name` of a batch, nulls as `None`.
pub fn str_column(batch: &deltalake::arrow::record_batch::RecordBatch, name: &str) -> Vec<Option<String>> {
    use deltalake::arrow::array::{Array, StringArray};
    let col = batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    let col = col.as_any().downcast_ref::<StringArray>().unwrap_or_else(|| panic!("{name} is not Utf8"));
    (0..col.len()).map(|i| col.is_valid(i).then(|| col.value(i).to_string())).collect()
}

/// The table's `ind`s, sorted, after asserting that none appears twice.
pub async fn inds_once(lake: &pinpipe::lake::Lake, table: &str) -> Vec<i64> {
    let batch = read_table(lake, table).await.unwrap_or_else(|| panic!("table {table} exists"));
    let mut counts: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    for ind in int_column(&batch, "ind").into_iter().flatten() {
        *counts.entry(ind).or_default() += 1;
    }
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "duplicated rows in {table}: {doubled:?}");
    let mut inds: Vec<i64> = counts.into_keys().collect();
    inds.sort();
    inds
}

/// A lake in `bucket` on moto reached through a fault proxy, with delta-rs' own retries kept
/// short so that faults also reach pinpipe's retry path.
pub fn lake_through(bucket: &str, proxy: &fault_proxy::FaultProxy) -> pinpipe::lake::Lake {
    let options = [
        ("AWS_ENDPOINT_URL", proxy.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("max_retries", "2"),
        ("retry_timeout", "5s"),
        ("backoff_config.init_backoff", "10ms"),
        ("backoff_config.max_backoff", "200ms"),
    ];
    pinpipe::lake::Lake::new(format!("s3://{bucket}/lake"))
        .with_storage_options(options.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// A clean `geo` record with index `ind`, as the stream carries it.
pub fn geo_record(ind: i64) -> Vec<u8> {
    serde_json::json!({"ind": ind, "timestamp": "2021-03-04 05:06:07", "latitude": 1.5, "longitude": 2.5, "country": "Chad"})
        .to_string()
        .into_bytes()
}

/// A Kinesis batch of `geo` records `inds` on `shard`, with sequence numbers `first`, `first + 1`, ...
pub fn geo_batch(
    shard: &str,
    first: u64,
    inds: impl IntoIterator<Item = i64>,
) -> aws_lambda_events::event::kinesis::KinesisEvent {
    use pinpipe::local::events::{KinesisDelivery, kinesis_event, sequence_number};
    let records: Vec<Vec<u8>> = inds.into_iter().map(geo_record).collect();
    let seqs: Vec<String> = (0..records.len() as u64).map(|i| sequence_number(first + i)).collect();
    let deliveries: Vec<KinesisDelivery> = records
        .iter()
        .zip(&seqs)
        .map(|(data, seq)| KinesisDelivery { shard_id: shard, sequence_number: seq, partition_key: "k", data })
        .collect();
    kinesis_event("us-east-1", "123456789012", "streaming-x-geo", &deliveries)
}

/// Delivers `event` the way Lambda does: again and again until the function reports success;
/// returns how many deliveries it took.
pub async fn deliver_until_success(
    sink: &pinpipe::sink::TableSink,
    event: &aws_lambda_events::event::kinesis::KinesisEvent,
) -> u32 {
    for attempt in 1..=40 {
        if pinpipe::kinesis_trigger::handle_kinesis_event(sink, event).await.batch_item_failures.is_empty() {
            return attempt;
        }
    }
    panic!("the batch never succeeded in 40 deliveries");
}

/// Quarantines `records` (raw bytes and reason) of `table` as an older release's rules did:
/// under rules version `rules_version` (`None`: from before versions were recorded), with
/// origins `kinesis:old/shardId-0` and positions no other call of this run used. One commit.
#[allow(clippy::result_large_err)] // the appender's build closure returns its LakeError
pub async fn quarantine_under_older_rules(
    lake: &pinpipe::lake::Lake,
    table: pinpipe::Table,
    records: &[(Vec<u8>, &str)],
    rules_version: Option<i32>,
) {
    use pinpipe::lake::{Marked, Position, SourceKey, TableAppender, add_missing_columns};
    use pinpipe::schema::{Origin, Quarantined, RULES_VERSION_COLUMN, quarantine_batch, quarantine_schema};
    static NEXT_POSITION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let schema = quarantine_schema();
    let delta = lake.open_or_create(pinpipe::table::QUARANTINE_TABLE, &schema).await.unwrap();
    let delta = add_missing_columns(delta, &schema).await.unwrap();
    let items: Vec<Marked<Quarantined>> = records
        .iter()
        .map(|(raw, reason)| Marked {
            key: SourceKey::Offset(format!("old-rules/{table}/{}", unique("q"))),
            position: Position::parse("1").unwrap(),
            item: Quarantined {
                table,
                origin: Origin {
                    source: "kinesis:old/shardId-0".into(),
                    position: NEXT_POSITION.fetch_add(1, Ordering::Relaxed).to_string(),
                },
                raw: raw.clone(),
                reason: reason.to_string(),
            },
        })
        .collect();
    TableAppender::new(delta)
        .unwrap()
        .append(&items, Default::default(), |fresh| {
            let batch = quarantine_batch(fresh, chrono::Utc::now().timestamp_micros())?;
            let at = batch.schema().index_of(RULES_VERSION_COLUMN)?;
            let mut columns = batch.columns().to_vec();
            columns[at] =
                std::sync::Arc::new(deltalake::arrow::array::Int32Array::from(vec![rules_version; fresh.len()]));
            Ok(deltalake::arrow::record_batch::RecordBatch::try_new(batch.schema(), columns)?)
        })
        .await
        .unwrap();
}
