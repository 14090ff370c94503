//! What a redrive is asked to do, from the CLI's flags or the maintenance Lambda's event
//! (`{"redrive": {...}}`), and the bounds it runs within.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::like::Like;
use crate::Table;

/// Quarantined records one redrive looks at per table, unless told otherwise: a few seconds of
/// work and a bounded memory (each record's raw bytes are held until the run is written).
pub const DEFAULT_LIMIT: usize = 10_000;

/// The most a maintenance Lambda event may ask for per table: a run must fit the function's
/// time limit and memory. More is redriven by more events (or `pinpipe redrive`).
pub const MAX_LAMBDA_LIMIT: usize = 50_000;

/// Which quarantined records to redrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveRequest {
    /// Only this table's records; all three when `None`.
    pub table: Option<Table>,
    /// Only records whose current reason (the quarantine's, or the last redrive's) matches.
    pub reason_like: Option<Like>,
    /// Only records quarantined at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// At most this many records per table and run.
    pub limit: usize,
    /// Work out what would move and write nothing.
    pub dry_run: bool,
}

impl Default for RedriveRequest {
    fn default() -> Self {
        Self { table: None, reason_like: None, since: None, limit: DEFAULT_LIMIT, dry_run: false }
    }
}

impl RedriveRequest {
    /// The tables this request covers.
    pub fn tables(&self) -> Vec<Table> {
        self.table.map_or_else(|| Table::ALL.to_vec(), |t| vec![t])
    }
}

/// Why a request could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid redrive request: {0}")]
pub struct RequestError(pub String);

/// `--since` and the event's `since`: an RFC 3339 time (`2026-11-25T10:00:00Z`) or a day
/// (`2026-11-25`, from its midnight UTC).
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, RequestError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(RequestError(format!("since {text:?}: expected an RFC 3339 time (2026-11-25T10:00:00Z) or a day (2026-11-25)")))
}

/// The `redrive` field of a maintenance event, as sent. Unknown fields are refused, so a typo
/// (`"reason"` for `"reason_like"`) does not silently redrive more than meant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveEvent {
    table: Option<String>,
    reason_like: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
    #[serde(default)]
    dry_run: bool,
}

/// The redrive a maintenance Lambda event asks for: `Some` for `{"redrive": {...}}` (every
/// field optional: `table`, `reason_like`, `since`, `limit`, `dry_run`), `None` for any other
/// event (the scheduled one), which runs maintenance.
pub fn request_from_event(event: &serde_json::Value) -> Result<Option<RedriveRequest>, RequestError> {
    let Some(redrive) = event.get("redrive") else { return Ok(None) };
    let wire: RedriveEvent = serde_json::from_value(redrive.clone()).map_err(|e| RequestError(e.to_string()))?;
    let table = wire.table.map(|t| t.parse::<Table>()).transpose().map_err(|e| RequestError(e.to_string()))?;
    let limit = wire.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LAMBDA_LIMIT {
        return Err(RequestError(format!("limit {limit}: must be between 1 and {MAX_LAMBDA_LIMIT} per run")));
    }
    Ok(Some(RedriveRequest {
        table,
        reason_like: wire.reason_like.as_deref().map(Like::new),
        since: wire.since.as_deref().map(parse_since).transpose()?,
        limit,
        dry_run: wire.dry_run,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_redrive_event_is_read_with_defaults_and_any_other_event_is_not_one() {
        let full = json!({"redrive": {"table": "pin", "reason_like": "follower_count:%", "since": "2026-11-25",
            "limit": 500, "dry_run": true}});
        let request = request_from_event(&full).unwrap().unwrap();
        assert_eq!(request.table, Some(Table::Pin));
        assert_eq!(request.reason_like.as_ref().map(Like::pattern), Some("follower_count:%"));
        assert_eq!(request.since.unwrap().to_rfc3339(), "2026-11-25T00:00:00+00:00");
        assert_eq!((request.limit, request.dry_run), (500, true));

        let bare = request_from_event(&json!({"redrive": {}})).unwrap().unwrap();
        assert_eq!(bare, RedriveRequest::default());
        assert_eq!(bare.tables(), Table::ALL);

        let scheduled = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
        assert_eq!(request_from_event(&scheduled).unwrap(), None);
    }

    #[test]
    fn a_redrive_event_with_an_unknown_field_or_a_bad_value_is_refused_with_a_reason() {
        let cases = [
            (json!({"redrive": {"reason": "x"}}), "unknown field `reason`"),
            (json!({"redrive": {"table": "pins"}}), "unknown table \"pins\""),
            (json!({"redrive": {"since": "yesterday"}}), "since \"yesterday\""),
            (json!({"redrive": {"limit": 0}}), "limit 0: must be between 1 and"),
            (json!({"redrive": {"limit": MAX_LAMBDA_LIMIT + 1}}), "must be between 1 and 50000"),
            (json!({"redrive": {"dry_run": "yes"}}), "invalid type"),
            (json!({"redrive": "pin"}), "invalid type"),
        ];
        for (event, expected) in cases {
            let err = request_from_event(&event).unwrap_err().to_string();
            assert!(err.starts_with("invalid redrive request: ") && err.contains(expected), "{event}: {err}");
        }
    }

    #[test]
    fn since_takes_a_time_or_a_day() {
        assert_eq!(parse_since("2026-11-25T10:00:00+01:00").unwrap().to_rfc3339(), "2026-11-25T09:00:00+00:00");
        assert_eq!(parse_since("2026-11-25").unwrap().to_rfc3339(), "2026-11-25T00:00:00+00:00");
        assert!(parse_since("25/11/2026").is_err());
    }
}
