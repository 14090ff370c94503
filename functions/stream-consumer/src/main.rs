//! The stream consumer Lambda: one deployment per table, triggered by that table's Kinesis
//! stream. It cleans each batch and appends it to the table's Delta table exactly once.
//!
//! Configuration: `PINPIPE_TABLE` (`pin`, `geo` or `user`), `PINPIPE_LAKE_URI`
//! (`s3://bucket/prefix` or a local directory); see `pinpipe::config::ConsumerConfig`.

mod payload;

use lambda_runtime::layers::TracingLayer;
use lambda_runtime::{Diagnostic, Error, LambdaEvent, Runtime, service_fn};
use pinpipe::config::{ConsumerConfig, Env};
use pinpipe::kinesis_trigger::handle_kinesis_payload;
use pinpipe::sink::TableSink;

use crate::payload::{Payloads, TakePayloads};

#[tokio::main]
async fn main() -> Result<(), Error> {
    pinpipe::allocator::keep_batch_memory();
    pinpipe::logging::init();
    let config = ConsumerConfig::from_env(&Env::process())?;
    let sink = TableSink::new(config.table, config.lake);
    let sink = &sink;
    // The handler gets the payload's bytes untouched (see `payload`) and pinpipe reads the
    // Kinesis event from them in one pass that borrows from them (`pinpipe::kinesis_event`).
    let payloads = Payloads::default();
    let taken = payloads.clone();
    let handler = service_fn(move |event: LambdaEvent<()>| {
        let payload = taken.take(&event.context.request_id);
        async move {
            // A payload that is no Kinesis event fails the invocation (Lambda retries the batch),
            // with an error type the logs and the event source mapping's failure record can name.
            let invalid =
                |message: String| Diagnostic { error_type: "InvalidKinesisEvent".into(), error_message: message };
            let payload = payload
                .ok_or_else(|| invalid("the runtime called the handler without the invocation's payload".into()))?;
            handle_kinesis_payload(sink, &payload).await.map_err(|e| invalid(e.to_string()))
        }
    });
    // As `lambda_runtime::run`, with the payload taken before the runtime parses it.
    Runtime::new(handler).layer(TracingLayer::new()).layer(TakePayloads(payloads)).run().await
}
