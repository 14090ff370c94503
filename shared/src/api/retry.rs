//! Putting records through the stream port, retrying what was throttled.
//!
//! Kinesis throttles per shard and answers PutRecords record by record, so a batch can half
//! land. Only what failed with a retryable error is sent again, with exponential backoff and
//! full jitter ([`crate::backoff`]), until everything landed or the policy's budget — the time a
//! client is willing to wait for its answer — is spent. Every record ends with an outcome at its
//! original index; what still failed is reported to the client, never dropped.

use std::time::Duration;

use super::RetryPolicy;
use crate::stream::{PutAck, PutEntry, PutOutcome, StreamError, StreamStore};

/// Per-record error codes of Kinesis that are worth sending again.
const RETRYABLE_RECORD_ERRORS: [&str; 3] =
    ["ProvisionedThroughputExceededException", "InternalFailure", "KMSThrottlingException"];

/// The Kinesis-style per-record outcome that stands for a whole-call error.
fn failed_outcome(err: &StreamError) -> PutOutcome {
    let error_code = match err {
        StreamError::NotFound(_) => "ResourceNotFoundException",
        StreamError::InUse(_) => "ResourceInUseException",
        StreamError::Throttled(_) => "ProvisionedThroughputExceededException",
        StreamError::Invalid(_) => "InvalidArgumentException",
        StreamError::Service(_) => "InternalFailure",
    };
    // Service details may name accounts and endpoints: they are logged, not answered.
    let error_message = match err {
        StreamError::Service(_) => "the stream service failed; retry later".to_string(),
        other => other.to_string(),
    };
    PutOutcome::Failed { error_code: error_code.to_string(), error_message }
}

/// Puts one record, retrying a throttled call within the policy's budget.
pub async fn put_record_with_retry<S: StreamStore + ?Sized>(
    store: &S,
    stream: &str,
    entry: PutEntry,
    policy: &RetryPolicy,
) -> Result<PutAck, StreamError> {
    let start = tokio::time::Instant::now();
    let mut retry = 0;
    loop {
        match store.put_record(stream, entry.clone()).await {
            Err(StreamError::Throttled(message)) => {
                retry += 1;
                match next_pause(policy, start, retry) {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => {
                        tracing::warn!(
                            stream,
                            retries = retry - 1,
                            "put still throttled when the retry budget ran out"
                        );
                        return Err(StreamError::Throttled(message));
                    }
                }
            }
            other => return other,
        }
    }
}

/// The pause before retry number `retry`, or `None` once the budget is spent.
fn next_pause(policy: &RetryPolicy, start: tokio::time::Instant, retry: u32) -> Option<Duration> {
    let remaining = policy.budget.checked_sub(start.elapsed()).filter(|r| !r.is_zero())?;
    Some(policy.delay(retry).min(remaining))
}

/// Puts `entries` and retries only the ones that failed with a retryable error (throttling,
/// Kinesis' `InternalFailure`) — and whole calls that were throttled — with exponential backoff
/// and full jitter, until all landed or the policy's budget is spent. Returns each record's
/// final outcome at its original index; what still failed is reported as
/// [`PutOutcome::Failed`], never dropped.
///
/// `Err` means nothing was written: the first call failed outright (or stayed throttled for the
/// whole budget). A whole-call error after some records landed fails the remaining ones
/// individually instead.
pub async fn put_records_with_retry<S: StreamStore + ?Sized>(
    store: &S,
    stream: &str,
    entries: Vec<PutEntry>,
    policy: &RetryPolicy,
) -> Result<Vec<PutOutcome>, StreamError> {
    let start = tokio::time::Instant::now();
    let mut outcomes: Vec<Option<PutOutcome>> = vec![None; entries.len()];
    let mut pending: Vec<usize> = (0..entries.len()).collect();
    let mut retry = 0;
    let mut last_error: Option<StreamError> = None;
    while !pending.is_empty() {
        let batch: Vec<PutEntry> = pending.iter().map(|&i| entries[i].clone()).collect();
        match store.put_records(stream, batch).await {
            Ok(results) if results.len() == pending.len() => {
                let mut still_failing = Vec::new();
                for (&index, outcome) in pending.iter().zip(results) {
                    if let PutOutcome::Failed { error_code, .. } = &outcome
                        && RETRYABLE_RECORD_ERRORS.contains(&error_code.as_str())
                    {
                        still_failing.push(index);
                    }
                    outcomes[index] = Some(outcome);
                }
                pending = still_failing;
                last_error = None;
            }
            Ok(results) => {
                let err = StreamError::Service(format!(
                    "stream service answered {} outcomes for {} records",
                    results.len(),
                    pending.len()
                ));
                tracing::warn!(stream, error = %err, "put call answered the wrong number of outcomes");
                fail_pending(&mut outcomes, &mut pending, &err);
                last_error = Some(err);
            }
            Err(err @ StreamError::Throttled(_)) => last_error = Some(err),
            Err(err) => {
                // Nothing resolved yet, so nothing was written: the caller can say so plainly.
                if outcomes.iter().all(Option::is_none) {
                    return Err(err);
                }
                tracing::warn!(stream, failed = pending.len(), error = %err, "put call failed after some records landed");
                fail_pending(&mut outcomes, &mut pending, &err);
                last_error = Some(err);
            }
        }
        if pending.is_empty() {
            break;
        }
        retry += 1;
        match next_pause(policy, start, retry) {
            Some(pause) => {
                tracing::debug!(stream, retry, pending = pending.len(), ?pause, "retrying failed records");
                tokio::time::sleep(pause).await;
            }
            None => {
                tracing::warn!(
                    stream,
                    retries = retry - 1,
                    failed = pending.len(),
                    "records still failing when the retry budget ran out"
                );
                break;
            }
        }
    }
    if outcomes.iter().all(Option::is_none)
        && let Some(err) = last_error
    {
        return Err(err);
    }
    let unresolved = last_error.unwrap_or_else(|| StreamError::Service("no outcome was reported".to_string()));
    Ok(outcomes.into_iter().map(|outcome| outcome.unwrap_or_else(|| failed_outcome(&unresolved))).collect())
}

/// Gives every pending record `err` as its final outcome.
fn fail_pending(outcomes: &mut [Option<PutOutcome>], pending: &mut Vec<usize>, err: &StreamError) {
    for index in pending.drain(..) {
        outcomes[index] = Some(failed_outcome(err));
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use serde_json::json;

    use super::super::test_store::FaultyStreams;
    use super::super::test_support::*;
    use super::super::{ApiConfig, handle};
    use super::*;
    use crate::local::events::sequence_number;

    #[tokio::test]
    async fn only_failed_entries_are_resent_and_outcomes_keep_their_index() {
        let store = FaultyStreams::with_streams(&[PIN]);
        store.fail_record("b", 2, THROTTLED);
        store.fail_record("d", 1, "InternalFailure");
        let outcomes =
            put_records_with_retry(&store, PIN, entries(&["a", "b", "c", "d", "e"]), &quick_retry(1000)).await.unwrap();
        assert_eq!(store.put_calls(), vec![vec!["a", "b", "c", "d", "e"], vec!["b", "d"], vec!["b"]]);
        let shards_of: Vec<String> = outcomes
            .iter()
            .map(|o| match o {
                PutOutcome::Ok(ack) => ack.sequence_number.clone(),
                PutOutcome::Failed { error_code, .. } => error_code.clone(),
            })
            .collect();
        // a, c, e land first (1, 2, 3), then d (4), then b (5): each at its own index.
        assert_eq!(shards_of, [1, 5, 2, 4, 3].map(sequence_number));
        let keys: Vec<String> = store.written(PIN).into_iter().map(|e| e.partition_key).collect();
        assert_eq!(keys, ["a", "c", "e", "d", "b"]);
    }

    #[tokio::test]
    async fn records_that_cannot_succeed_are_not_retried() {
        let store = FaultyStreams::with_streams(&[PIN]);
        store.fail_record("b", u32::MAX, "KMSAccessDeniedException");
        let outcomes = put_records_with_retry(&store, PIN, entries(&["a", "b"]), &quick_retry(1000)).await.unwrap();
        assert_eq!(store.put_calls().len(), 1);
        assert!(matches!(&outcomes[0], PutOutcome::Ok(_)));
        assert_eq!(
            outcomes[1],
            PutOutcome::Failed {
                error_code: "KMSAccessDeniedException".to_string(),
                error_message: "b failed".to_string()
            }
        );
    }

    #[tokio::test]
    async fn an_exhausted_budget_reports_the_failures_it_has() {
        let store = FaultyStreams::with_streams(&[PIN]);
        store.fail_record("b", u32::MAX, THROTTLED);
        let started = std::time::Instant::now();
        let outcomes = put_records_with_retry(&store, PIN, entries(&["a", "b", "c"]), &quick_retry(40)).await.unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(40) && elapsed < Duration::from_secs(2), "{elapsed:?}");
        let calls = store.put_calls();
        assert!(calls.len() > 2, "it kept retrying within the budget: {calls:?}");
        assert!(calls[1..].iter().all(|call| call == &["b"]), "only b is resent: {calls:?}");
        assert_eq!(outcomes.len(), 3);
        assert!(matches!(&outcomes[0], PutOutcome::Ok(_)) && matches!(&outcomes[2], PutOutcome::Ok(_)));
        assert!(matches!(&outcomes[1], PutOutcome::Failed { error_code, .. } if error_code == THROTTLED));
    }

    #[tokio::test]
    async fn a_zero_budget_makes_one_attempt() {
        let store = FaultyStreams::with_streams(&[PIN]);
        store.fail_record("a", 1, THROTTLED);
        let outcomes = put_records_with_retry(&store, PIN, entries(&["a"]), &quick_retry(0)).await.unwrap();
        assert_eq!(store.put_calls().len(), 1);
        assert!(matches!(&outcomes[0], PutOutcome::Failed { .. }));
    }

    #[tokio::test]
    async fn throttled_whole_calls_are_retried_and_errors_before_any_write_are_returned() {
        let store = FaultyStreams::with_streams(&[PIN]);
        store.throttle_calls(2);
        let outcomes = put_records_with_retry(&store, PIN, entries(&["a", "b"]), &quick_retry(1000)).await.unwrap();
        assert_eq!(store.put_calls().len(), 3);
        assert!(outcomes.iter().all(|o| matches!(o, PutOutcome::Ok(_))));

        let store = FaultyStreams::with_streams(&[PIN]);
        store.throttle_calls(u32::MAX);
        let result = put_records_with_retry(&store, PIN, entries(&["a"]), &quick_retry(20)).await;
        assert!(matches!(result, Err(StreamError::Throttled(_))), "{result:?}");
        assert!(store.put_calls().len() > 1);

        let store = FaultyStreams::with_streams(&[]);
        let result = put_records_with_retry(&store, PIN, entries(&["a"]), &quick_retry(1000)).await;
        assert_eq!(result, Err(StreamError::NotFound(PIN.to_string())));
        assert_eq!(store.put_calls().len(), 1, "a missing stream is not retried");
    }

    #[tokio::test]
    async fn an_error_after_some_records_landed_fails_the_rest_individually() {
        let store = FaultyStreams::with_streams(&[PIN]);
        store.fail_record("b", u32::MAX, THROTTLED);
        store.fail_puts_after(1, StreamError::Service("connection reset".to_string()));
        let outcomes = put_records_with_retry(&store, PIN, entries(&["a", "b"]), &quick_retry(1000)).await.unwrap();
        assert_eq!(store.put_calls().len(), 2);
        assert!(matches!(&outcomes[0], PutOutcome::Ok(_)));
        assert_eq!(
            outcomes[1],
            PutOutcome::Failed {
                error_code: "InternalFailure".to_string(),
                error_message: "the stream service failed; retry later".to_string()
            }
        );
    }

    #[tokio::test]
    async fn a_whole_call_error_during_put_records_maps_to_its_status() {
        let store = FaultyStreams::with_streams(&[PIN]);
        store.fail_puts_after(0, StreamError::Invalid("record too large".to_string()));
        let response = call(&store, put_json(&format!("/streams/{PIN}/records"), &batch(1))).await;
        assert_error(&response, 400, "InvalidArgument", "record too large");
        let store = FaultyStreams::with_streams(&[]);
        let response = call(&store, put_json(&format!("/streams/{PIN}/records"), &batch(1))).await;
        assert_error(&response, 404, "StreamNotFound", PIN);
    }

    #[tokio::test]
    async fn put_record_retries_a_throttled_call_within_the_budget() {
        let store = ours();
        store.throttle_calls(2);
        let config = ApiConfig { put_retry: quick_retry(1000), ..config(false) };
        let request = put_json(&format!("/streams/{PIN}/record"), &json!({"Data": {"ind": 1}, "PartitionKey": "p"}));
        let response = handle(&config, &store, request.clone()).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(store.put_calls().len(), 3);
        assert_eq!(store.written(PIN).len(), 1);

        store.throttle_calls(u32::MAX);
        let config = ApiConfig { put_retry: quick_retry(20), ..config };
        let response = handle(&config, &store, request).await;
        assert_error(&response, 429, "Throttled", "retry later");
        assert_eq!(store.written(PIN).len(), 1);
    }

    #[tokio::test]
    async fn put_records_reports_what_still_failed_after_the_budget_with_status_200() {
        let store = ours();
        store.fail_record("key-1", u32::MAX, THROTTLED);
        let config = ApiConfig { put_retry: quick_retry(30), ..config(false) };
        let response = handle(&config, &store, put_json(&format!("/streams/{PIN}/records"), &batch(3))).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body["FailedRecordCount"], 1);
        let records = response.body["Records"].as_array().unwrap();
        assert!(records[0]["SequenceNumber"].is_string());
        assert_eq!(records[1], json!({"ErrorCode": THROTTLED, "ErrorMessage": "key-1 failed"}));
        assert!(records[2]["SequenceNumber"].is_string());
        let keys: Vec<String> = store.written(PIN).into_iter().map(|e| e.partition_key).collect();
        assert_eq!(keys, ["key-0", "key-2"]);
    }
}
