//! The column/rule model: each table as a list of [`Column`]s, each derived from the raw
//! record by one [`Rule`]. Only data lives here; `Rule::apply` (in the parent module) is the logic.

use crate::Table;

/// The version of the cleaning rules: **bump it whenever a rule changes what passes** (a new
/// placeholder, a looser parse, a new accepted field name; also a change that rejects more).
/// Every quarantine row records the version that rejected it, and a redrive (`crate::redrive`)
/// re-cleans only the rows rejected under an older version than this one, so without a bump
/// a fixed rule never reaches the records it would now let through (docs/cleaning.md#redrive).
pub const RULES_VERSION: u32 = 1;

/// The type of a clean column; maps onto Arrow/Delta types in `schema.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int64,
    Utf8,
    /// Microseconds since the epoch, UTC.
    Timestamp,
    /// `[latitude, longitude]`.
    Coordinates,
}

/// How a clean column is derived from the raw record.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// The join key: a required integer, read from the first of these fields that is present.
    Key(&'static [&'static str]),
    /// An optional integer.
    Int(&'static str),
    /// A string; empty strings and the listed placeholders become null.
    Text { field: &'static str, nulls: &'static [&'static str] },
    /// `"211k"` → 211000, `"1M"` → 1000000, `"92"` → 92; placeholders become null.
    FollowerCount { field: &'static str, nulls: &'static [&'static str] },
    /// `"Local save in /data/x"` → `"/data/x"`.
    SavePath(&'static str),
    /// `"2020-08-28 03:52:47"`, ISO 8601 with `T`, optional fraction and offset; UTC.
    Timestamp(&'static str),
    /// `[latitude, longitude]` from two numeric fields, named in that order.
    Coordinates(&'static [&'static str; 2]),
    /// `first + " " + last` from two text fields, named in that order.
    FullName(&'static [&'static str; 2]),
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub rule: Rule,
}

const fn col(name: &'static str, ty: ColumnType, rule: Rule) -> Column {
    Column { name, ty, rule }
}

const fn text(name: &'static str, nulls: &'static [&'static str]) -> Column {
    col(name, ColumnType::Utf8, Rule::Text { field: name, nulls })
}

use ColumnType::{Coordinates as CoordinatesType, Int64, Timestamp as TimestampType, Utf8};

const PIN: &[Column] = &[
    col("ind", Int64, Rule::Key(&["index", "ind"])),
    text("unique_id", &[]),
    text("title", &["No Title Data Available"]),
    text("description", &["No description available Story format", "No description available", "Untitled"]),
    col("follower_count", Int64, Rule::FollowerCount { field: "follower_count", nulls: &["User Info Error"] }),
    text("poster_name", &["User Info Error"]),
    text("tag_list", &["N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e"]),
    text("is_image_or_video", &[]),
    text("image_src", &["Image src error."]),
    col("save_location", Utf8, Rule::SavePath("save_location")),
    text("category", &[]),
    // The original pipeline dropped `downloaded`; pinpipe keeps it after the others (docs/records.md).
    col("downloaded", Int64, Rule::Int("downloaded")),
];

const GEO: &[Column] = &[
    col("ind", Int64, Rule::Key(&["ind", "index"])),
    text("country", &[]),
    col("coordinates", CoordinatesType, Rule::Coordinates(&["latitude", "longitude"])),
    col("timestamp", TimestampType, Rule::Timestamp("timestamp")),
];

const USER: &[Column] = &[
    col("ind", Int64, Rule::Key(&["ind", "index"])),
    col("user_name", Utf8, Rule::FullName(&["first_name", "last_name"])),
    col("age", Int64, Rule::Int("age")),
    col("date_joined", TimestampType, Rule::Timestamp("date_joined")),
];

impl Rule {
    /// The raw fields the rule reads, in the order it reads them.
    pub fn fields(self) -> Vec<&'static str> {
        match self {
            Rule::Key(fields) => fields.to_vec(),
            Rule::Int(field)
            | Rule::Text { field, .. }
            | Rule::FollowerCount { field, .. }
            | Rule::SavePath(field)
            | Rule::Timestamp(field) => vec![field],
            Rule::Coordinates(fields) | Rule::FullName(fields) => fields.to_vec(),
        }
    }
}

impl Table {
    /// The clean columns of the table, in the order of docs/records.md.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Table::Pin => PIN,
            Table::Geo => GEO,
            Table::User => USER,
        }
    }

    /// The raw fields the table's rules read, each once, in column order: the one list the
    /// property tests, the fuzzers and anything else that builds raw records take their keys
    /// from.
    pub fn raw_fields(self) -> Vec<&'static str> {
        let mut fields: Vec<&'static str> = Vec::new();
        for field in self.columns().iter().flat_map(|c| c.rule.fields()) {
            if !fields.contains(&field) {
                fields.push(field);
            }
        }
        fields
    }

    /// [`Table::raw_fields`], worked out once: the parse of every record asks it of each key,
    /// to tell the fields the rules read from those it rescues.
    pub(super) fn read_fields(self) -> &'static ReadFields {
        static READ_FIELDS: std::sync::OnceLock<[ReadFields; 3]> = std::sync::OnceLock::new();
        let all = READ_FIELDS.get_or_init(|| Table::ALL.map(|t| ReadFields::new(t.raw_fields())));
        let i = Table::ALL.iter().position(|t| *t == self).expect("every table is in Table::ALL");
        &all[i]
    }
}

/// The raw fields a table's rules read, numbered: the parse asks of every key of every record
/// whether a rule reads it and under which number, and the rules ask it for their fields' values.
#[derive(Debug)]
pub(super) struct ReadFields {
    names: Vec<&'static str>,
    /// By [`slot_of`] a name: its number + 1, 0 for no name, [`SHARED_SLOT`] when names share
    /// the slot. One load and one comparison tell a key's number, where a scan of the names
    /// would compare text for several of them.
    slots: [u8; SLOTS],
}

const SLOTS: usize = 1024;
const SHARED_SLOT: u8 = u8::MAX;

/// A slot from a name's length and first letter (5 bits each): cheap, and the three tables'
/// names each get a slot of their own (`ind` and `index`, `title` and `tag_list` differ in length).
#[inline]
fn slot_of(name: &str) -> usize {
    let first = name.as_bytes().first().map_or(0, |b| usize::from(*b));
    (name.len() & 31) << 5 | first & 31
}

impl ReadFields {
    fn new(names: Vec<&'static str>) -> Self {
        assert!(names.len() < usize::from(SHARED_SLOT), "a table reads fewer than 255 fields");
        let mut slots = [0u8; SLOTS];
        for (i, name) in names.iter().enumerate() {
            let slot = &mut slots[slot_of(name)];
            *slot = if *slot == 0 { i as u8 + 1 } else { SHARED_SLOT };
        }
        Self { names, slots }
    }

    /// How many fields the rules read.
    pub(super) fn len(&self) -> usize {
        self.names.len()
    }

    /// The number of the field `key`, if a rule reads it.
    #[inline]
    pub(super) fn number(&self, key: &str) -> Option<usize> {
        match self.slots[slot_of(key)] {
            0 => None,
            SHARED_SLOT => self.names.iter().position(|name| *name == key),
            slot => {
                let i = usize::from(slot - 1);
                (self.names[i] == key).then_some(i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use super::super::Cell;
    use super::super::test_support::{cell, clean_json, pin};

    #[test]
    fn column_orders_follow_the_spec() {
        let names = |t: Table| t.columns().iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(
            names(Table::Pin),
            [
                "ind",
                "unique_id",
                "title",
                "description",
                "follower_count",
                "poster_name",
                "tag_list",
                "is_image_or_video",
                "image_src",
                "save_location",
                "category",
                "downloaded"
            ]
        );
        assert_eq!(names(Table::Geo), ["ind", "country", "coordinates", "timestamp"]);
        assert_eq!(names(Table::User), ["ind", "user_name", "age", "date_joined"]);
    }

    #[test]
    fn index_is_renamed_to_ind_and_other_tables_accept_either() {
        assert_eq!(Table::Pin.columns()[0].name, "ind");
        assert_eq!(clean_json(Table::Pin, pin(json!({"index": 5}))).unwrap().ind(), 5);
        assert_eq!(clean_json(Table::Geo, json!({"index": 6})).unwrap().ind(), 6);
    }

    #[test]
    fn every_placeholder_becomes_null_in_its_column() {
        let cases = [
            ("title", "No Title Data Available"),
            ("description", "No description available Story format"),
            ("description", "No description available"),
            ("description", "Untitled"),
            ("poster_name", "User Info Error"),
            ("follower_count", "User Info Error"),
            ("tag_list", "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e"),
            ("image_src", "Image src error."),
        ];
        for (column, placeholder) in cases {
            assert_eq!(
                cell(Table::Pin, pin(json!({ column: placeholder })), column),
                Cell::Null,
                "{column} = {placeholder:?}"
            );
        }
    }

    #[test]
    fn every_field_a_rule_reads_is_found_by_its_number_and_no_other_key_is() {
        for table in Table::ALL {
            let reads = table.read_fields();
            let names = table.raw_fields();
            assert_eq!(reads.len(), names.len());
            for (i, name) in names.iter().enumerate() {
                assert_eq!(reads.number(name), Some(i), "{table}.{name}");
                assert_eq!(reads.slots[slot_of(name)], i as u8 + 1, "{table}.{name} has a slot of its own");
            }
            for other in ["", "x", "Index", "indexx", "new_field", "first_nam", "tilte"] {
                assert_eq!(reads.number(other), None, "{table}: {other:?}");
            }
        }
        // Names that share a slot (same length, same first letter) are still told apart, by text.
        let shared = ReadFields::new(vec!["ab", "ac"]);
        assert_eq!(shared.slots[slot_of("ab")], SHARED_SLOT);
        assert_eq!((shared.number("ab"), shared.number("ac"), shared.number("ad")), (Some(0), Some(1), None));
    }

    #[test]
    fn placeholders_are_only_null_in_their_own_column() {
        assert_eq!(cell(Table::Pin, pin(json!({"title": "Untitled"})), "title"), Cell::Str("Untitled".into()));
    }
}
