//! The stream consumer Lambda: one deployment per table, triggered by that table's Kinesis
//! stream. It cleans each batch and appends it to the table's Delta table exactly once.
//!
//! Configuration: `PINPIPE_TABLE` (`pin`, `geo` or `user`), `PINPIPE_LAKE_URI`
//! (`s3://bucket/prefix` or a local directory); see `pinpipe::config::ConsumerConfig`.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pinpipe::config::{ConsumerConfig, Env};
use pinpipe::kinesis_trigger::handle_kinesis_event;
use pinpipe::sink::TableSink;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pinpipe::logging::init();
    let config = ConsumerConfig::from_env(&Env::process())?;
    let sink = TableSink::new(config.table, config.lake);
    let sink = &sink;
    run(service_fn(move |event: LambdaEvent<KinesisEvent>| async move {
        Ok::<KinesisEventResponse, Error>(handle_kinesis_event(sink, &event.payload).await)
    }))
    .await
}
