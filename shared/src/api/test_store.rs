//! A test-only decorator of the stream port: [`FaultyStreams`] wraps any [`StreamStore`], makes
//! chosen calls and records fail the way Kinesis fails (throttled records, throttled calls,
//! errors), and remembers what the API asked of it.
//!
//! The streams themselves are the in-memory adapter the demo runs on, [`EmbeddedStreams`], so
//! there is one in-memory stream service and the API's tests check what really landed in it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use futures::FutureExt;

use crate::local::embedded::EmbeddedStreams;
use crate::stream::{PutAck, PutEntry, PutOutcome, StreamError, StreamInfo, StreamStore};

/// `inner` with faults injected in front of it and its calls recorded.
pub(super) struct FaultyStreams<S = EmbeddedStreams> {
    inner: S,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Per partition key: how many more times its record fails with the given code.
    record_failures: HashMap<String, (u32, &'static str)>,
    /// How many more put calls are throttled as a whole.
    throttled_calls: u32,
    /// What the next call that is not a put answers instead of reaching `inner`.
    control_error: Option<StreamError>,
    /// Put calls that fail as a whole after this many put calls were made.
    fail_puts_after: Option<(usize, StreamError)>,
    /// The partition keys sent by each put call, in order.
    put_calls: Vec<Vec<String>>,
    /// The streams created through the decorator, with the shard count asked for.
    created: Vec<(String, Option<i32>)>,
    /// The streams deleted through the decorator.
    deleted: Vec<String>,
}

impl<S: StreamStore> FaultyStreams<S> {
    /// `inner`, with no fault planned yet.
    pub(super) fn new(inner: S) -> Self {
        Self { inner, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// The record with this partition key fails `times` more times with error `code`.
    pub(super) fn fail_record(&self, partition_key: &str, times: u32, code: &'static str) {
        self.state().record_failures.insert(partition_key.to_string(), (times, code));
    }

    /// The next `calls` put calls are throttled as a whole.
    pub(super) fn throttle_calls(&self, calls: u32) {
        self.state().throttled_calls = calls;
    }

    /// The next call that is not a put (list, describe, create, delete) fails with `err`.
    pub(super) fn fail_next_control_call(&self, err: StreamError) {
        self.state().control_error = Some(err);
    }

    /// Every put call fails as a whole with `err` once `calls` put calls were made.
    pub(super) fn fail_puts_after(&self, calls: usize, err: StreamError) {
        self.state().fail_puts_after = Some((calls, err));
    }

    /// The partition keys sent by each put call, in order.
    pub(super) fn put_calls(&self) -> Vec<Vec<String>> {
        self.state().put_calls.clone()
    }

    /// The streams created, with the shard count asked for.
    pub(super) fn created(&self) -> Vec<(String, Option<i32>)> {
        self.state().created.clone()
    }

    /// The streams deleted.
    pub(super) fn deleted(&self) -> Vec<String> {
        self.state().deleted.clone()
    }

    /// The planned failure of a call that is not a put, if any.
    fn control_fault(&self) -> Result<(), StreamError> {
        self.state().control_error.take().map_or(Ok(()), Err)
    }

    /// Records a put call and fails it as a whole if so planned, or if `stream` does not exist:
    /// a missing stream fails the call before any record's planned failure is spent.
    async fn start_put(&self, stream: &str, entries: &[PutEntry]) -> Result<(), StreamError> {
        {
            let mut state = self.state();
            let calls_so_far = state.put_calls.len();
            state.put_calls.push(entries.iter().map(|e| e.partition_key.clone()).collect());
            if let Some((after, err)) = &state.fail_puts_after
                && calls_so_far >= *after
            {
                return Err(err.clone());
            }
            if state.throttled_calls > 0 {
                state.throttled_calls -= 1;
                return Err(StreamError::Throttled("rate exceeded".to_string()));
            }
        }
        self.inner.describe_stream(stream).await.map(|_| ())
    }

    /// Each entry's planned failure (`code`, message), spending one of its remaining failures.
    fn record_faults(&self, entries: &[PutEntry]) -> Vec<Option<(&'static str, String)>> {
        let mut state = self.state();
        entries
            .iter()
            .map(|entry| match state.record_failures.get_mut(&entry.partition_key) {
                Some((times, code)) if *times > 0 => {
                    *times -= 1;
                    Some((*code, format!("{} failed", entry.partition_key)))
                }
                _ => None,
            })
            .collect()
    }
}

impl FaultyStreams {
    /// Embedded streams of one shard each (`shardId-000000000000`), named `names`, empty.
    pub(super) fn with_streams(names: &[&str]) -> Self {
        let inner = EmbeddedStreams::new(1, 0);
        for name in names {
            let created = inner.create_stream(name, None).now_or_never().expect("the embedded service never waits");
            created.expect("the stream names are distinct");
        }
        Self::new(inner)
    }

    /// The names of the streams that exist.
    pub(super) fn streams(&self) -> Vec<String> {
        self.inner.list_streams().now_or_never().expect("the embedded service never waits").unwrap_or_default()
    }

    /// The records written to `stream`, in the order they were written.
    pub(super) fn written(&self, stream: &str) -> Vec<PutEntry> {
        let mut records: Vec<_> = (0..self.inner.shard_count(stream))
            .flat_map(|shard| self.inner.read(stream, shard, 0, usize::MAX))
            .collect();
        records.sort_by(|a, b| a.sequence_number.cmp(&b.sequence_number));
        records.into_iter().map(|r| PutEntry { data: r.data, partition_key: r.partition_key }).collect()
    }

    /// Whether no stream was written, created or deleted, and no put was even tried.
    pub(super) fn nothing_changed(&self) -> bool {
        let state = self.state();
        state.put_calls.is_empty()
            && state.created.is_empty()
            && state.deleted.is_empty()
            && self.streams().iter().all(|stream| self.written(stream).is_empty())
    }
}

#[async_trait]
impl<S: StreamStore> StreamStore for FaultyStreams<S> {
    async fn list_streams(&self) -> Result<Vec<String>, StreamError> {
        self.control_fault()?;
        self.inner.list_streams().await
    }

    async fn describe_stream(&self, name: &str) -> Result<StreamInfo, StreamError> {
        self.control_fault()?;
        self.inner.describe_stream(name).await
    }

    async fn create_stream(&self, name: &str, shard_count: Option<i32>) -> Result<(), StreamError> {
        self.control_fault()?;
        self.inner.create_stream(name, shard_count).await?;
        self.state().created.push((name.to_string(), shard_count));
        Ok(())
    }

    async fn delete_stream(&self, name: &str) -> Result<(), StreamError> {
        self.control_fault()?;
        self.inner.delete_stream(name).await?;
        self.state().deleted.push(name.to_string());
        Ok(())
    }

    /// A record's planned failure, whatever its code, fails the whole call as throttled.
    async fn put_record(&self, stream: &str, entry: PutEntry) -> Result<PutAck, StreamError> {
        let entries = [entry];
        self.start_put(stream, &entries).await?;
        if let [Some((code, message))] = self.record_faults(&entries).as_slice() {
            return Err(StreamError::Throttled(format!("{code}: {message}")));
        }
        let [entry] = entries;
        self.inner.put_record(stream, entry).await
    }

    /// Records with a planned failure answer it; the others go to `inner` in one call.
    async fn put_records(&self, stream: &str, entries: Vec<PutEntry>) -> Result<Vec<PutOutcome>, StreamError> {
        self.start_put(stream, &entries).await?;
        let faults = self.record_faults(&entries);
        let passed: Vec<PutEntry> =
            entries.into_iter().zip(&faults).filter(|(_, fault)| fault.is_none()).map(|(entry, _)| entry).collect();
        let mut landed = if passed.is_empty() { Vec::new() } else { self.inner.put_records(stream, passed).await? };
        landed.reverse();
        Ok(faults
            .into_iter()
            .map(|fault| match fault {
                Some((code, message)) => PutOutcome::Failed { error_code: code.to_string(), error_message: message },
                None => landed.pop().expect("inner answers one outcome per record"),
            })
            .collect())
    }
}
