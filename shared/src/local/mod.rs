//! What only runs on one machine: the CLI's `demo` and `emulate`, the benchmarks and the tests.
//! None of it ships in a Lambda function; it sits behind the `local` feature (and is compiled
//! for the library's own unit tests).
//!
//! - [`embedded`]: an in-memory stream service behind the stream port, with shards and
//!   Kinesis-shaped sequence numbers — the demo's stand-in for Kinesis.
//! - [`emulator`]: a deterministic generator of realistic, dirty posts.
//! - [`events`]: builders of the events Lambda delivers (Kinesis batches as Lambda shapes them).

pub mod embedded;
pub mod emulator;
pub mod events;
