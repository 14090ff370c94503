//! The three tables of pinpipe (and the quarantine table beside them) and the names they go by in
//! Kinesis, Kafka and the lake.

use std::fmt;
use std::str::FromStr;

/// One of the three related event tables. Every post produces one record of each, joined on `ind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Pin,
    Geo,
    User,
}

/// The name of the table that holds every rejected record, of all three tables.
pub const QUARANTINE_TABLE: &str = "quarantine";

/// The name of the table that records every quarantined record a redrive looked at, and what
/// became of it (`crate::redrive`): the quarantine's history, never rewritten.
pub const REDRIVES_TABLE: &str = "quarantine_redrives";

impl Table {
    pub const ALL: [Table; 3] = [Table::Pin, Table::Geo, Table::User];

    /// The table's short name: `pin`, `geo` or `user`.
    pub fn name(self) -> &'static str {
        match self {
            Table::Pin => "pin",
            Table::Geo => "geo",
            Table::User => "user",
        }
    }

    /// The Kinesis stream this deployment uses for the table: `streaming-<prefix>-<table>`.
    pub fn stream_name(self, prefix: &str) -> String {
        format!("streaming-{prefix}-{}", self.name())
    }

    /// The Kafka topic of the batch path: `<prefix>.<table>`.
    pub fn topic(self, prefix: &str) -> String {
        format!("{prefix}.{}", self.name())
    }

    /// Which table, if any, a stream name of this deployment belongs to.
    pub fn from_stream_name(prefix: &str, stream: &str) -> Option<Table> {
        let rest = stream.strip_prefix("streaming-")?.strip_prefix(prefix)?.strip_prefix('-')?;
        rest.parse().ok()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Table {
    type Err = UnknownTable;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pin" => Ok(Table::Pin),
            "geo" => Ok(Table::Geo),
            "user" => Ok(Table::User),
            other => Err(UnknownTable(other.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown table {0:?}: expected one of pin, geo, user")]
pub struct UnknownTable(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_deployment_prefix() {
        assert_eq!(Table::Pin.stream_name("0a1b2c3d4e5f"), "streaming-0a1b2c3d4e5f-pin");
        assert_eq!(Table::User.topic("0a1b2c3d4e5f"), "0a1b2c3d4e5f.user");
    }

    #[test]
    fn stream_names_map_back_to_tables_only_for_this_prefix() {
        assert_eq!(Table::from_stream_name("abc", "streaming-abc-geo"), Some(Table::Geo));
        assert_eq!(Table::from_stream_name("abc", "streaming-abd-geo"), None);
        assert_eq!(Table::from_stream_name("abc", "streaming-abc-orders"), None);
        assert_eq!(Table::from_stream_name("abc", "streaming-abc-geo-x"), None);
    }

    #[test]
    fn unknown_table_names_are_rejected_with_the_choices() {
        let err = "pins".parse::<Table>().unwrap_err();
        assert!(err.to_string().contains("pin, geo, user"), "{err}");
    }
}
