//! Raw bytes through the consumer's entry point: the first byte picks the table (pin, geo,
//! user), the rest is the record as it would arrive in a Kinesis record or a Kafka Connect line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, raw)) = data.split_first() else { return };
    pinpipe_fuzz::check(pinpipe_fuzz::table_of(first), raw);
});
