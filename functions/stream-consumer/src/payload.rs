//! The invoke payload's bytes, from the runtime API's answer to the handler with no parse and no
//! copy.
//!
//! `lambda_runtime` deserialises every payload into the handler's event type before calling it.
//! Even as a `Box<RawValue>` that is a scan of the whole payload and a copy of it (about 16 ms
//! for a 12 MB batch of 10,000 pin records); as a `KinesisEvent` it was 35 ms and most of the
//! allocations of an invocation. [`TakePayloads`], the outermost layer of the runtime, takes
//! each invocation's body (reference-counted `Bytes`, as hyper collected it) and gives the
//! runtime `null` to deserialise into the handler's `()` instead; the handler then takes the
//! body by its request id from [`Payloads`] and `pinpipe::kinesis_event` reads it in place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use lambda_runtime::LambdaInvocation;
use lambda_runtime::tower::{Layer, Service};

/// The bodies taken from invocations, by request id, until their handler takes them. A map
/// rather than one slot, so it stays right if the runtime ever runs invocations concurrently.
#[derive(Clone, Default)]
pub struct Payloads(Arc<Mutex<HashMap<String, Bytes>>>);

impl Payloads {
    /// The payload of invocation `request_id`, once.
    pub fn take(&self, request_id: &str) -> Option<Bytes> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(request_id)
    }

    fn keep(&self, request_id: String, body: Bytes) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(request_id, body);
    }
}

/// The layer that takes each invocation's body into [`Payloads`].
pub struct TakePayloads(pub Payloads);

impl<S> Layer<S> for TakePayloads {
    type Service = TakePayloadsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TakePayloadsService { inner, payloads: self.0.clone() }
    }
}

pub struct TakePayloadsService<S> {
    inner: S,
    payloads: Payloads,
}

impl<S: Service<LambdaInvocation>> Service<LambdaInvocation> for TakePayloadsService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> Self::Future {
        let body = std::mem::replace(&mut invocation.body, Bytes::from_static(b"null"));
        self.payloads.keep(invocation.context.request_id.clone(), body);
        self.inner.call(invocation)
    }
}
