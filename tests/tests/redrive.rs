//! Quarantine redrive on moto: after a rule change, every record the new rules fix lands in its
//! table exactly once — in one go, after a crash between a run's intent and its landing, and
//! with redrives running at once — while the records still rejected stay, with today's reason.

use std::collections::BTreeMap;

use pinpipe::Table;
use pinpipe::kinesis_trigger::consume_kinesis;
use pinpipe::lake::Lake;
use pinpipe::redrive::{Like, RedriveReport, RedriveRequest, TableRedrive, redrive};
use pinpipe::sink::TableSink;
use pinpipe::table::{QUARANTINE_TABLE, REDRIVES_TABLE};
use pinpipe_tests::fault_proxy::{Fault, FaultPlan, FaultProxy};
use pinpipe_tests::{
    endpoint, geo_batch, geo_record, inds_once, int_column, lake_through, new_bucket, quarantine_under_older_rules,
    read_table, str_column,
};

const OLD_REASON: &str = "timestamp: cannot parse \"2021-03-04 05:06:07\" as a timestamp";
const STILL_BAD: &str = "timestamp: cannot parse \"yesterday\" as a timestamp";
const FIXED: std::ops::RangeInclusive<i64> = 101..=110;

fn still_bad(ind: i64) -> Vec<u8> {
    format!(r#"{{"ind": {ind}, "timestamp": "yesterday"}}"#).into_bytes()
}

/// A `geo` table with stream rows 1..=5, and a quarantine as older rules left it: ten records
/// today's rules clean (`FIXED`), three they still reject, and two that must never move: one
/// rejected under today's rules, one that holds only part of its record.
async fn lake_after_a_rule_change(lake: &Lake) {
    consume_kinesis(&TableSink::new(Table::Geo, lake.clone()), &geo_batch("shardId-000000000000", 1, 1..=5))
        .await
        .unwrap();
    let mut old: Vec<(Vec<u8>, &str)> = FIXED.map(|ind| (geo_record(ind), OLD_REASON)).collect();
    old.extend((201..=203).map(|ind| (still_bad(ind), "timestamp: an older reason")));
    quarantine_under_older_rules(lake, Table::Geo, &old[..7], None).await;
    quarantine_under_older_rules(lake, Table::Geo, &old[7..], Some(0)).await;
    let current = pinpipe::clean::RULES_VERSION as i32;
    quarantine_under_older_rules(lake, Table::Geo, &[(geo_record(301), "under today's rules")], Some(current)).await;
    let partial = "record of 5000000 bytes is over the 4194304-byte limit; its first 65536 bytes are kept";
    quarantine_under_older_rules(lake, Table::Geo, &[(geo_record(302), partial)], None).await;
}

fn expected_inds() -> Vec<i64> {
    (1..=5).chain(FIXED).collect()
}

fn geo(report: &RedriveReport) -> &TableRedrive {
    report.tables.iter().find(|t| t.table == "geo").expect("a geo report")
}

/// The ledger's (outcome, reason) counts and its run numbers.
async fn ledger(lake: &Lake) -> (BTreeMap<(String, Option<String>), usize>, Vec<i64>) {
    let Some(batch) = read_table(lake, REDRIVES_TABLE).await else { return Default::default() };
    let mut outcomes = BTreeMap::new();
    for (outcome, reason) in str_column(&batch, "outcome").into_iter().zip(str_column(&batch, "reason")) {
        *outcomes.entry((outcome.unwrap(), reason)).or_default() += 1;
    }
    let mut runs: Vec<i64> = int_column(&batch, "run").into_iter().flatten().collect();
    runs.sort();
    runs.dedup();
    (outcomes, runs)
}

fn expected_ledger() -> BTreeMap<(String, Option<String>), usize> {
    BTreeMap::from([(("landed".into(), None), 10), (("still_rejected".into(), Some(STILL_BAD.into())), 3)])
}

#[tokio::test]
async fn a_redrive_after_a_rule_change_lands_each_fixed_record_once() {
    let lake = Lake::new(format!("s3://{}/lake", new_bucket().await));
    lake_after_a_rule_change(&lake).await;
    let report = redrive(&lake, &RedriveRequest::default()).await.unwrap();
    let geo_report = geo(&report);
    assert_eq!((geo_report.run, geo_report.moved, geo_report.stayed, geo_report.more), (Some(1), 10, 3, false));
    assert_eq!(geo_report.moved_by_reason, BTreeMap::from([(OLD_REASON.to_string(), 10)]));
    assert_eq!(geo_report.stayed_by_reason, BTreeMap::from([(STILL_BAD.to_string(), 3)]));
    for other in report.tables.iter().filter(|t| t.table != "geo") {
        assert_eq!((other.run, other.moved, other.stayed), (None, 0, 0), "{other:?}");
    }
    assert_eq!(inds_once(&lake, "geo").await, expected_inds());
    assert_eq!(ledger(&lake).await, (expected_ledger(), vec![1]));
    // The landed rows keep their lineage: where the record first came from.
    let rows = read_table(&lake, "geo").await.unwrap();
    let redriven =
        str_column(&rows, "_source").iter().filter(|s| s.as_deref() == Some("kinesis:old/shardId-0")).count();
    assert_eq!(redriven, 10);

    // Nothing is left to redrive under these rules, and the quarantine keeps every row.
    let again = redrive(&lake, &RedriveRequest::default()).await.unwrap();
    assert_eq!((geo(&again).run, geo(&again).moved, geo(&again).stayed), (None, 0, 0));
    assert_eq!(inds_once(&lake, "geo").await, expected_inds());
    assert_eq!(lake.count_rows(QUARANTINE_TABLE).await.unwrap(), Some(15));
    assert_eq!(ledger(&lake).await, (expected_ledger(), vec![1]));
}

fn geo_log_put(method: &str, path: &str) -> bool {
    method == "PUT" && path.contains("/lake/geo/_delta_log/") && path.ends_with(".json")
}

#[tokio::test]
async fn a_redrive_that_crashed_before_landing_is_finished_once_by_the_next() {
    let bucket = new_bucket().await;
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none(), 11).await;
    let lake = lake_through(&bucket, &proxy);
    lake_after_a_rule_change(&lake).await;
    // The run's intent is written, then every commit to `geo` fails: the redrive dies there.
    proxy.set_plan(FaultPlan { probability: 1.0, faults: vec![Fault::InternalError], matches: geo_log_put });
    let crashed = redrive(&lake, &RedriveRequest { table: Some(Table::Geo), ..Default::default() }).await;
    assert!(crashed.is_err(), "the landing must fail: {crashed:?}");
    proxy.set_plan(FaultPlan::none());
    assert_eq!(ledger(&lake).await, (expected_ledger(), vec![1]), "the intent was written");
    assert_eq!(inds_once(&lake, "geo").await, (1..=5).collect::<Vec<_>>(), "nothing landed");

    // A dry run says what the next redrive will do, and does nothing.
    let dry = redrive(&lake, &RedriveRequest { dry_run: true, ..Default::default() }).await.unwrap();
    assert_eq!(geo(&dry).finished.iter().map(|f| (f.run, f.records)).collect::<Vec<_>>(), [(1, 10)]);
    assert_eq!((geo(&dry).moved, geo(&dry).stayed), (0, 0));
    assert_eq!(inds_once(&lake, "geo").await, (1..=5).collect::<Vec<_>>());

    // The rerun finishes run 1 and has nothing else to do.
    let rerun = redrive(&lake, &RedriveRequest::default()).await.unwrap();
    let finished: Vec<_> = geo(&rerun).finished.iter().map(|f| (f.run, f.records, f.rows_written)).collect();
    assert_eq!(finished, [(1, 10, 10)]);
    assert_eq!((geo(&rerun).run, geo(&rerun).moved), (None, 0));
    assert_eq!(inds_once(&lake, "geo").await, expected_inds());
    assert_eq!(ledger(&lake).await, (expected_ledger(), vec![1]));

    // And once more: nothing is unfinished, nothing moves.
    let third = redrive(&lake, &RedriveRequest::default()).await.unwrap();
    assert!(geo(&third).finished.is_empty() && geo(&third).moved == 0, "{third:?}");
    assert_eq!(inds_once(&lake, "geo").await, expected_inds());
}

#[tokio::test]
async fn three_redrives_at_once_land_each_fixed_record_once() {
    let bucket = new_bucket().await;
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none(), 12).await;
    let lake = lake_through(&bucket, &proxy);
    lake_after_a_rule_change(&lake).await;
    // Three independent handles, as three processes would have.
    let (a, b, c) = (lake_through(&bucket, &proxy), lake_through(&bucket, &proxy), lake_through(&bucket, &proxy));
    let request = RedriveRequest { table: Some(Table::Geo), ..Default::default() };
    let (ra, rb, rc) = tokio::join!(redrive(&a, &request), redrive(&b, &request), redrive(&c, &request));
    let reports = [ra.unwrap(), rb.unwrap(), rc.unwrap()];
    let moved: usize = reports.iter().map(|r| geo(r).moved).sum();
    let runs: Vec<_> = reports.iter().filter_map(|r| geo(r).run).collect();
    assert_eq!((moved, runs.as_slice()), (10, &[1][..]), "one run moved them all: {reports:?}");
    assert_eq!(inds_once(&lake, "geo").await, expected_inds());
    assert_eq!(ledger(&lake).await, (expected_ledger(), vec![1]));
}

#[tokio::test]
async fn a_dry_run_says_what_would_move_and_writes_nothing() {
    let lake = Lake::new(format!("s3://{}/lake", new_bucket().await));
    lake_after_a_rule_change(&lake).await;
    let geo_version = lake.open("geo").await.unwrap().unwrap().version();
    let dry = redrive(&lake, &RedriveRequest { dry_run: true, ..Default::default() }).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!((geo(&dry).run, geo(&dry).moved, geo(&dry).stayed), (None, 10, 3));
    assert_eq!(geo(&dry).stayed_by_reason, BTreeMap::from([(STILL_BAD.to_string(), 3)]));
    assert!(lake.open(REDRIVES_TABLE).await.unwrap().is_none(), "no ledger was written");
    assert_eq!(lake.open("geo").await.unwrap().unwrap().version(), geo_version);
    assert!(lake.open("pin").await.unwrap().is_none(), "no table was created");
}

#[tokio::test]
async fn filters_and_the_limit_choose_what_a_run_redrives_and_the_next_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap());
    lake_after_a_rule_change(&lake).await;
    let only = |like: &str| RedriveRequest { reason_like: Some(Like::new(like)), ..Default::default() };

    // Only the records whose reason matches; none quarantined after tomorrow.
    let tomorrow = chrono::Utc::now() + chrono::TimeDelta::days(1);
    let later = redrive(&lake, &RedriveRequest { since: Some(tomorrow), ..Default::default() }).await.unwrap();
    assert_eq!((geo(&later).moved, geo(&later).stayed), (0, 0));
    let older = redrive(&lake, &only("timestamp: an older%")).await.unwrap();
    assert_eq!((geo(&older).run, geo(&older).moved, geo(&older).stayed), (Some(1), 0, 3));
    // Their current reason is today's now, and the rules that gave it are today's: left alone.
    assert_eq!(geo(&redrive(&lake, &only("%yesterday%")).await.unwrap()).stayed, 0);

    // Four at a time: the runs go on until every fixed record has landed.
    let four = RedriveRequest { limit: 4, ..only("timestamp: cannot parse%") };
    let mut moved = Vec::new();
    loop {
        let report = redrive(&lake, &four).await.unwrap();
        moved.push(geo(&report).moved);
        if !geo(&report).more {
            break;
        }
    }
    assert_eq!(moved, [4, 4, 2]);
    assert_eq!(inds_once(&lake, "geo").await, expected_inds());
    assert_eq!(ledger(&lake).await, (expected_ledger(), vec![1, 2, 3, 4]));
}
