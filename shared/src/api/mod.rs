//! The producer's REST contract (SPEC §3), independent of Lambda.
//!
//! pinpipe keeps the routes of the original API Gateway → Kinesis proxy so existing clients
//! keep working. Every request is validated completely before anything is written, and every
//! refusal is a 4xx with a JSON body `{"error": "<Code>", "message": "<what is wrong>"}`.
//! The handler is generic over the [`StreamStore`] port, so the Lambda function, the local
//! runner and the unit tests share it.
//!
//! A request goes through one file per step, and this one ties them together ([`handle`]):
//!
//! - `config`: what a deployment allows ([`ApiConfig`]) and how patiently it retries ([`RetryPolicy`]).
//! - `error`: the request and response types, and the refusals that become error responses.
//! - `route`: which action a method and path ask for, and whether the stream is this deployment's.
//! - `body`: reading and validating JSON bodies into what Kinesis stores.
//! - `retry`: putting records, retrying what was throttled within a budget.

use http::StatusCode;
use serde_json::{Value, json};

use crate::Table;
use crate::stream::{PutAck, PutOutcome, StreamStore};

mod body;
mod config;
mod error;
mod retry;
mod route;
#[cfg(test)]
mod test_store;
#[cfg(test)]
mod test_support;

pub use config::{
    ApiConfig, DEFAULT_PUT_RETRY_BUDGET, PREFIX_VAR, PUT_RETRY_BUDGET_VAR, RetryPolicy, STREAM_ADMIN_VAR,
};
pub use error::{ApiRequest, ApiResponse};
pub use retry::{put_record_with_retry, put_records_with_retry};

use error::ApiError;
use route::{Action, check_stream, route};

/// API Gateway refuses bodies above 10 MB; so does pinpipe when it runs without one.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Kinesis' limit on one record: data plus partition key.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Kinesis' limit on one PutRecords call: all data plus all partition keys.
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Kinesis' limit on the number of records of one PutRecords call.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Kinesis' limit on a partition key, in Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;
/// Kinesis' limit on a stream name.
pub const MAX_STREAM_NAME_CHARS: usize = 128;

/// Answers one request of the contract. Never panics on input; every refusal happens before
/// anything is written.
pub async fn handle<S: StreamStore + ?Sized>(config: &ApiConfig, store: &S, request: ApiRequest) -> ApiResponse {
    match dispatch(config, store, &request).await {
        Ok(response) => response,
        Err(err) => {
            if err.status.is_server_error() {
                tracing::warn!(method = %request.method, path = %request.path, status = err.status.as_u16(), error = err.code, "request failed");
            } else {
                tracing::debug!(method = %request.method, path = %request.path, status = err.status.as_u16(), error = err.code, message = %err.message, "request refused");
            }
            err.into()
        }
    }
}

async fn dispatch<S: StreamStore + ?Sized>(
    config: &ApiConfig,
    store: &S,
    request: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let action = route(&request.method, &request.path)?;
    match action {
        Action::ListStreams => {
            let names: Vec<String> = store
                .list_streams()
                .await?
                .into_iter()
                .filter(|name| Table::from_stream_name(&config.prefix, name).is_some())
                .collect();
            Ok(ApiResponse::ok(json!({"StreamNames": names, "HasMoreStreams": false})))
        }
        Action::DescribeStream(stream) => {
            check_stream(config, stream)?;
            let info = store.describe_stream(stream).await?;
            let mut description = serde_json::to_value(&info).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    format!("could not encode the stream: {e}"),
                )
            })?;
            // Every shard is listed, as Kinesis' own clients expect to be told.
            if let Value::Object(fields) = &mut description {
                fields.insert("HasMoreShards".to_string(), Value::Bool(false));
            }
            Ok(ApiResponse::ok(json!({"StreamDescription": description})))
        }
        Action::CreateStream(stream) => {
            check_stream(config, stream)?;
            check_admin(config, "create", stream)?;
            let shards = body::shard_count(request, stream)?;
            store.create_stream(stream, shards).await?;
            tracing::info!(stream, shards, "stream created");
            Ok(ApiResponse::ok(json!({})))
        }
        Action::DeleteStream(stream) => {
            check_stream(config, stream)?;
            check_admin(config, "delete", stream)?;
            store.delete_stream(stream).await?;
            tracing::info!(stream, "stream deleted");
            Ok(ApiResponse::ok(json!({})))
        }
        Action::PutRecord(stream) => {
            check_stream(config, stream)?;
            let entry = body::put_record_body(request, stream)?;
            let ack = put_record_with_retry(store, stream, entry, &config.put_retry).await?;
            Ok(ApiResponse::ok(ack_json(&ack)))
        }
        Action::PutRecords(stream) => {
            check_stream(config, stream)?;
            let entries = body::put_records_body(request, stream)?;
            let outcomes = put_records_with_retry(store, stream, entries, &config.put_retry).await?;
            Ok(ApiResponse::ok(put_records_json(&outcomes)))
        }
    }
}

fn check_admin(config: &ApiConfig, verb: &str, stream: &str) -> Result<(), ApiError> {
    if config.stream_admin {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "StreamAdminDisabled",
        format!(
            "this deployment does not allow clients to {verb} streams ({stream}); set {STREAM_ADMIN_VAR}=true to allow it"
        ),
    ))
}

/// A JSON object built in place (`json!` copies every value it is given, a whole array included).
fn object(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(fields.into_iter().map(|(key, value)| (key.to_string(), value)).collect())
}

fn ack_json(ack: &PutAck) -> Value {
    object([
        ("SequenceNumber", Value::String(ack.sequence_number.clone())),
        ("ShardId", Value::String(ack.shard_id.clone())),
    ])
}

/// Kinesis' PutRecords answer: the failure count and one entry per record, in request order.
fn put_records_json(outcomes: &[PutOutcome]) -> Value {
    let failed = outcomes.iter().filter(|o| matches!(o, PutOutcome::Failed { .. })).count();
    let records: Vec<Value> = outcomes
        .iter()
        .map(|outcome| match outcome {
            PutOutcome::Ok(ack) => ack_json(ack),
            PutOutcome::Failed { error_code, error_message } => object([
                ("ErrorCode", Value::String(error_code.clone())),
                ("ErrorMessage", Value::String(error_message.clone())),
            ]),
        })
        .collect();
    object([("FailedRecordCount", Value::from(failed)), ("Records", Value::Array(records))])
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::test_store::FaultyStreams;
    use super::test_support::*;
    use super::*;
    use crate::local::events::sequence_number;

    // --- stream administration -------------------------------------------------------------

    #[tokio::test]
    async fn list_shows_only_this_deployments_streams() {
        let store =
            FaultyStreams::with_streams(&[PIN, USER, "streaming-other-pin", "orders", "streaming-0a1b2c3d4e5f-x"]);
        let response = call(&store, get("/prod/streams")).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body, json!({"StreamNames": [PIN, USER], "HasMoreStreams": false}));
    }

    #[tokio::test]
    async fn describe_answers_a_kinesis_stream_description() {
        let store = ours();
        let response = call(&store, get(&format!("/streams/{GEO}"))).await;
        assert_eq!(response.status, StatusCode::OK);
        let description = &response.body["StreamDescription"];
        assert_eq!(description["StreamName"], GEO);
        assert_eq!(description["StreamARN"], format!("arn:aws:kinesis:local:000000000000:stream/{GEO}"));
        assert_eq!(description["StreamStatus"], "ACTIVE");
        assert_eq!(description["RetentionPeriodHours"], 24);
        assert_eq!(description["HasMoreShards"], false);
        assert_eq!(description["Shards"][0]["ShardId"], "shardId-000000000000");
        assert_eq!(description["Shards"][0]["StartingHashKey"], "0");
        assert!(description["Shards"][0].get("EndingSequenceNumber").is_none());
    }

    #[tokio::test]
    async fn create_takes_an_optional_shard_count_and_defaults_to_on_demand() {
        let store = FaultyStreams::with_streams(&[]);
        let create = |name: &str| ApiRequest::new(Method::POST, format!("/streams/{name}"));
        let response = call_admin(&store, create(PIN).with_json(&json!({"ShardCount": 2}))).await;
        assert_eq!((response.status, response.body), (StatusCode::OK, json!({})));
        assert_eq!(call_admin(&store, create(GEO)).await.status, StatusCode::OK);
        let response = call_admin(&store, create(USER).with_json(&json!({"StreamName": USER}))).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(
            store.created(),
            vec![(PIN.to_string(), Some(2)), (GEO.to_string(), None), (USER.to_string(), None)]
        );
        let again = call_admin(&store, create(PIN)).await;
        assert_error(&again, 409, "StreamInUse", PIN);
    }

    #[tokio::test]
    async fn create_and_delete_are_forbidden_when_admin_is_off() {
        let store = ours();
        let response = call(&store, ApiRequest::new(Method::POST, format!("/streams/{PIN}"))).await;
        assert_error(&response, 403, "StreamAdminDisabled", STREAM_ADMIN_VAR);
        let response = call(&store, ApiRequest::new(Method::DELETE, format!("/streams/{PIN}"))).await;
        assert_error(&response, 403, "StreamAdminDisabled", "delete");
        assert!(store.nothing_changed());
        assert_eq!(store.streams().len(), 3);
    }

    #[tokio::test]
    async fn delete_removes_the_stream_when_admin_is_on() {
        let store = ours();
        let response = call_admin(&store, ApiRequest::new(Method::DELETE, format!("/prod/streams/{GEO}"))).await;
        assert_eq!((response.status, response.body), (StatusCode::OK, json!({})));
        assert_eq!(store.deleted(), vec![GEO.to_string()]);
        let again = call_admin(&store, ApiRequest::new(Method::DELETE, format!("/streams/{GEO}"))).await;
        assert_error(&again, 404, "StreamNotFound", GEO);
    }

    // --- PutRecords ------------------------------------------------------------------------

    #[tokio::test]
    async fn put_records_answers_each_record_in_request_order() {
        let store = ours();
        let response = call(&store, put_json(&format!("/streams/{USER}/records"), &batch(3))).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(
            response.body,
            json!({"FailedRecordCount": 0, "Records": [
                {"SequenceNumber": sequence_number(1), "ShardId": "shardId-000000000000"},
                {"SequenceNumber": sequence_number(2), "ShardId": "shardId-000000000000"},
                {"SequenceNumber": sequence_number(3), "ShardId": "shardId-000000000000"},
            ]})
        );
        let written = store.written(USER);
        let keys: Vec<&str> = written.iter().map(|e| e.partition_key.as_str()).collect();
        assert_eq!(keys, ["key-0", "key-1", "key-2"]);
        assert_eq!(written[2].data, serde_json::to_vec(&pin_record(2)).unwrap());
    }
}
