//! `pinpipe redrive`: re-cleans quarantined records with today's rules and lands the ones that
//! pass in their table, exactly once (`pinpipe::redrive`, docs/cleaning.md#redrive). The
//! maintenance Lambda runs the same code for `{"redrive": {...}}`.

use std::fmt::Write as _;

use clap::Args;
use pinpipe::Table;
use pinpipe::redrive::{DEFAULT_LIMIT, Like, RedriveReport, RedriveRequest, parse_since, redrive};

#[derive(Args, Debug)]
pub struct RedriveArgs {
    /// The lake root: a local directory or `s3://bucket/prefix` (credentials and endpoint from
    /// the usual `AWS_*` variables).
    #[arg(long, default_value = "lake")]
    pub lake: String,
    /// Only this table's quarantined records (all three by default).
    #[arg(long, value_parser = crate::parse_table)]
    pub table: Option<Table>,
    /// Only records whose current reason matches this SQL LIKE pattern (`%` any run of
    /// characters, `_` one, `\` escapes), e.g. 'follower_count:%'.
    #[arg(long, value_name = "PATTERN")]
    pub reason_like: Option<String>,
    /// Only records quarantined at or after this time: RFC 3339 or a day (2026-11-25).
    #[arg(long, value_name = "TIME", value_parser = valid_since)]
    pub since: Option<String>,
    /// At most this many records per table; run again for the rest.
    #[arg(long, default_value_t = DEFAULT_LIMIT as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// Print what would move, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON (what the maintenance Lambda answers).
    #[arg(long)]
    pub json: bool,
}

fn valid_since(text: &str) -> Result<String, String> {
    parse_since(text).map(|_| text.to_string()).map_err(|e| e.to_string())
}

impl RedriveArgs {
    pub fn request(&self) -> anyhow::Result<RedriveRequest> {
        Ok(RedriveRequest {
            table: self.table,
            reason_like: self.reason_like.as_deref().map(Like::new),
            since: self.since.as_deref().map(parse_since).transpose()?,
            limit: usize::try_from(self.limit).unwrap_or(usize::MAX),
            dry_run: self.dry_run,
        })
    }
}

pub async fn run(args: &RedriveArgs) -> anyhow::Result<String> {
    let lake = crate::query::lake_from_arg(&args.lake)?;
    let report = redrive(&lake, &args.request()?).await?;
    Ok(if args.json { serde_json::to_string_pretty(&report)? + "\n" } else { render(&report) })
}

/// The report for a person: per table what moved and what stayed, by reason.
pub fn render(report: &RedriveReport) -> String {
    let (moved, stayed) = if report.dry_run { ("would move", "would stay") } else { ("moved", "stayed") };
    let mut out = String::new();
    let dry = if report.dry_run { ", dry run: nothing written" } else { "" };
    let _ = writeln!(out, "pinpipe redrive (rules version {}{dry})", report.rules_version);
    for table in &report.tables {
        for run in &table.finished {
            let verb = if report.dry_run { "would finish" } else { "finished" };
            let _ = writeln!(
                out,
                "{}: {verb} unfinished run {} ({} records, {} rows written now)",
                table.table, run.run, run.records, run.rows_written
            );
        }
        let run = table.run.map(|r| format!(" (run {r})")).unwrap_or_default();
        let _ = writeln!(out, "{}{run}: {} {moved}, {} {stayed}", table.table, table.moved, table.stayed);
        for (reason, n) in &table.moved_by_reason {
            let _ = writeln!(out, "  {moved} {n:>7}  had: {reason}");
        }
        for (reason, n) in &table.stayed_by_reason {
            let _ = writeln!(out, "  {stayed} {n:>7}  now: {reason}");
        }
        if table.more {
            let _ = writeln!(out, "  more records match than --limit: run pinpipe redrive again");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinpipe::redrive::{FinishedRun, TableRedrive};
    use std::collections::BTreeMap;

    #[test]
    fn the_report_says_what_moved_and_stayed_by_reason() {
        let report = RedriveReport {
            rules_version: 2,
            dry_run: false,
            tables: vec![TableRedrive {
                table: "pin".into(),
                run: Some(3),
                moved: 10,
                stayed: 2,
                moved_by_reason: BTreeMap::from([("follower_count: cannot convert \"1.2k\"".into(), 10)]),
                stayed_by_reason: BTreeMap::from([("follower_count: cannot convert \"lots\"".into(), 2)]),
                more: true,
                finished: vec![FinishedRun { run: 2, records: 4, rows_written: 4 }],
            }],
        };
        let text = render(&report);
        assert!(text.starts_with("pinpipe redrive (rules version 2)\n"), "{text}");
        assert!(text.contains("pin: finished unfinished run 2 (4 records, 4 rows written now)"), "{text}");
        assert!(text.contains("pin (run 3): 10 moved, 2 stayed"), "{text}");
        assert!(text.contains("  moved      10  had: follower_count: cannot convert \"1.2k\""), "{text}");
        assert!(text.contains("  stayed       2  now: follower_count: cannot convert \"lots\""), "{text}");
        assert!(text.contains("run pinpipe redrive again"), "{text}");
        let dry = render(&RedriveReport { dry_run: true, ..report });
        assert!(dry.contains("dry run: nothing written") && dry.contains("10 would move, 2 would stay"), "{dry}");
    }
}
