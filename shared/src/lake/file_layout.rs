//! How pinpipe lays out the Parquet files it writes: Snappy, and dictionary encoding only on the
//! columns whose values repeat across a batch's rows.
//!
//! Parquet writers dictionary-encode every column by default: each value is looked up in a hash
//! table and written as an index. That pays where values repeat (13 categories over 10,000 pins,
//! one `_source` per shard) and is pure cost where they do not: `unique_id`, `image_src`,
//! `_position` and the key are different on every row, `title` and `description` nearly so, and
//! a pin batch spent about 5% of its time interning them only for the dictionary to hold every
//! value once (or to outgrow its page and fall back to plain encoding). Every writer of a table
//! (the appends, compaction) uses these properties, so a table's files agree.

use deltalake::arrow::datatypes::Schema;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;

/// The columns, of any pinpipe table, whose values repeat across rows: few distinct values
/// (`category`, `is_image_or_video`, `country`, `age`), a poster's or a user's many posts
/// (`poster_name`, `tag_list`, `user_name`, `follower_count`), one value per batch or shard
/// (`_source`, `_ingested_at`, and the quarantine's `table`, `source`, `quarantined_at`), or a
/// handful of reasons. A column not named here is written plain.
pub const REPEATING_COLUMNS: &[&str] = &[
    // pin
    "follower_count",
    "poster_name",
    "tag_list",
    "is_image_or_video",
    "save_location",
    "category",
    "downloaded",
    // geo
    "country",
    // user
    "user_name",
    "age",
    // lineage of every clean table
    crate::schema::SOURCE,
    crate::schema::INGESTED_AT,
    // quarantine
    "table",
    "source",
    "reason",
    "quarantined_at",
    crate::schema::RULES_VERSION_COLUMN,
];

/// The writer properties of a file of a table with `schema`.
pub fn writer_properties(schema: &Schema) -> WriterProperties {
    let builder = WriterProperties::builder().set_compression(Compression::SNAPPY).set_dictionary_enabled(false);
    schema
        .fields()
        .iter()
        .filter(|field| REPEATING_COLUMNS.contains(&field.name().as_str()))
        .fold(builder, |builder, field| {
            builder.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), true)
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Table;
    use crate::schema::{quarantine_schema, table_schema};

    fn dictionary(properties: &WriterProperties, column: &str) -> bool {
        properties.dictionary_enabled(&ColumnPath::from(column))
    }

    #[test]
    fn repeating_columns_are_dictionary_encoded_and_unique_ones_written_plain() {
        let pin = writer_properties(&table_schema(Table::Pin));
        for column in ["category", "poster_name", "_source", "_ingested_at"] {
            assert!(dictionary(&pin, column), "{column}");
        }
        for column in ["ind", "unique_id", "title", "description", "image_src", "_position", "_rescued"] {
            assert!(!dictionary(&pin, column), "{column}");
        }
        assert!(dictionary(&writer_properties(&table_schema(Table::Geo)), "country"));
        assert!(!dictionary(&writer_properties(&table_schema(Table::Geo)), "timestamp"));
        let quarantine = writer_properties(&quarantine_schema());
        assert!(dictionary(&quarantine, "reason"));
        assert!(!dictionary(&quarantine, "raw"));
        assert_eq!(pin.compression(&ColumnPath::from("title")), Compression::SNAPPY);
    }

    #[test]
    fn every_repeating_column_is_a_column_of_some_table() {
        let names: Vec<String> = Table::ALL
            .iter()
            .map(|t| table_schema(*t))
            .chain([quarantine_schema()])
            .flat_map(|schema| schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>())
            .collect();
        for column in REPEATING_COLUMNS {
            assert!(names.iter().any(|n| n == column), "{column} is no column of any table");
        }
    }
}
