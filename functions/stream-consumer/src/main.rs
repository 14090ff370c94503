//! The stream consumer Lambda: one deployment per table, triggered by that table's Kinesis
//! stream. It cleans each batch and appends it to the table's Delta table exactly once.
//!
//! Configuration: `PINPIPE_TABLE` (`pin`, `geo` or `user`), `PINPIPE_LAKE_URI`
//! (`s3://bucket/prefix` or a local directory).

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pinpipe::consumer::TableSink;
use pinpipe::lake::Lake;
use pinpipe::{Table, config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let table: Table = config::required("PINPIPE_TABLE")?.parse()?;
    let lake = Lake::new(config::required("PINPIPE_LAKE_URI")?);
    let sink = TableSink::new(table, lake);
    let sink = &sink;
    run(service_fn(move |event: LambdaEvent<KinesisEvent>| async move {
        Ok::<KinesisEventResponse, Error>(sink.handle_kinesis_event(&event.payload).await)
    }))
    .await
}
