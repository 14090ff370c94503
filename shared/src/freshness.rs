//! Freshness: how old records are when the commit that lands them in the lake is written. A
//! record's age is the commit's time minus the time the record reached pinpipe's side of the
//! pipeline: Kinesis' `approximateArrivalTimestamp` on the stream path, the object's
//! `Last-Modified` on the batch path (docs/operations.md#freshness). Each batch reports the
//! median and the largest age of the records it committed (`FreshnessP50`, `FreshnessMax`).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The ages of the records one or more commits landed, each in whole milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordAges {
    millis: Vec<u64>,
}

impl RecordAges {
    /// The ages, at `committed_at`, of records that arrived at `arrivals`. A record that seems to
    /// have arrived after its commit (the two clocks disagree by a little) has age 0.
    pub fn at(committed_at: DateTime<Utc>, arrivals: impl IntoIterator<Item = DateTime<Utc>>) -> Self {
        let millis =
            arrivals.into_iter().map(|arrived| (committed_at - arrived).num_milliseconds().max(0) as u64).collect();
        Self { millis }
    }

    /// Adds the ages of another commit's records.
    pub fn add(&mut self, other: &RecordAges) {
        self.millis.extend_from_slice(&other.millis);
    }

    /// How many records the ages are of.
    pub fn len(&self) -> usize {
        self.millis.len()
    }

    pub fn is_empty(&self) -> bool {
        self.millis.is_empty()
    }

    /// The median age: the ⌈n/2⌉-th smallest (the lower median of an even count). `None` when
    /// no record was committed.
    pub fn p50(&self) -> Option<Duration> {
        if self.millis.is_empty() {
            return None;
        }
        let mut ages = self.millis.clone();
        let rank = ages.len().div_ceil(2) - 1;
        Some(Duration::from_millis(*ages.select_nth_unstable(rank).1))
    }

    /// The oldest record's age; `None` when no record was committed.
    pub fn max(&self) -> Option<Duration> {
        self.millis.iter().max().map(|ms| Duration::from_millis(*ms))
    }

    /// [`Self::p50`] in milliseconds, as logs, metrics and summaries give it.
    pub fn p50_ms(&self) -> Option<u64> {
        self.p50().map(|d| d.as_millis() as u64)
    }

    /// [`Self::max`] in milliseconds.
    pub fn max_ms(&self) -> Option<u64> {
        self.max().map(|d| d.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_seconds(seconds: f64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis((seconds * 1e3).round() as i64).unwrap()
    }

    #[test]
    fn ages_are_the_commit_time_minus_each_arrival_with_a_median_and_a_max() {
        let committed = at_seconds(1_764_061_990.0);
        let arrivals = [1_764_061_921.522, 1_764_061_960.0, 1_764_061_985.25, 1_764_061_989.999].map(at_seconds);
        let ages = RecordAges::at(committed, arrivals);
        assert_eq!(ages.len(), 4);
        assert_eq!(ages.max(), Some(Duration::from_millis(68_478)));
        // Four ages, 1 ms, 4.75 s, 30 s, 68.478 s: the median is the 2nd smallest.
        assert_eq!(ages.p50(), Some(Duration::from_millis(4_750)));
        assert_eq!((ages.p50_ms(), ages.max_ms()), (Some(4_750), Some(68_478)));
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_age_whatever_the_order() {
        let committed = at_seconds(100.0);
        let ages = RecordAges::at(committed, [40.0, 99.0, 10.0, 70.0, 95.0].map(at_seconds));
        assert_eq!(ages.p50(), Some(Duration::from_secs(30)));
        assert_eq!(ages.max(), Some(Duration::from_secs(90)));
    }

    #[test]
    fn a_record_from_a_clock_ahead_of_the_commit_is_zero_old_and_no_records_have_no_age() {
        let ages = RecordAges::at(at_seconds(100.0), [at_seconds(100.5)]);
        assert_eq!((ages.p50(), ages.max()), (Some(Duration::ZERO), Some(Duration::ZERO)));
        let none = RecordAges::default();
        assert_eq!((none.p50(), none.max(), none.is_empty()), (None, None, true));
    }

    #[test]
    fn ages_of_several_commits_add_up() {
        let mut all = RecordAges::at(at_seconds(10.0), [at_seconds(9.0)]);
        all.add(&RecordAges::at(at_seconds(20.0), [at_seconds(15.0), at_seconds(17.0)]));
        assert_eq!((all.len(), all.p50_ms(), all.max_ms()), (3, Some(3_000), Some(5_000)));
    }
}
