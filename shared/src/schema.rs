//! The Arrow/Delta schema of each clean table and of the quarantine table, and the column
//! builders that turn clean records into Arrow record batches (one builder per column, never
//! row by row through an intermediate form).

use std::borrow::Borrow;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BinaryBuilder, Float64Builder, Int32Array, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;

use crate::Table;
use crate::clean::{Cell, CleanRecord, ColumnType};

/// Lineage columns appended to every clean table, for debugging and audits.
pub const SOURCE: &str = "_source";
pub const POSITION: &str = "_position";
pub const INGESTED_AT: &str = "_ingested_at";
/// The last column of every clean table: the record's fields that no cleaning rule reads, as
/// JSON text, or null. Last, because that is where Delta adds a column to a table created
/// before it existed, so old and new tables have the same column order (docs/records.md).
pub const RESCUED: &str = crate::clean::RESCUED_COLUMN;

/// Where a record came from: `kinesis:<stream>/<shard>` with its sequence number, or
/// `s3://<bucket>/<key>` with its line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub source: String,
    pub position: String,
}

/// The column of the quarantine that records the version of the cleaning rules that rejected
/// the row ([`crate::clean::RULES_VERSION`]). Last and nullable: quarantine tables from before
/// it gain it the way clean tables gained `_rescued`, and their older rows read null, which
/// means rules from before versions were recorded (version 0).
pub const RULES_VERSION_COLUMN: &str = "rules_version";

pub(crate) fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn coordinates_type() -> DataType {
    // "element" is the name Delta's array type round-trips to, so batches match the table schema.
    DataType::List(Arc::new(Field::new("element", DataType::Float64, true)))
}

fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Utf8 => DataType::Utf8,
        ColumnType::Timestamp => timestamp_type(),
        ColumnType::Coordinates => coordinates_type(),
    }
}

/// The schema of a clean table: its columns in the order of docs/records.md (the key `ind` not
/// null), then lineage, then the rescued fields. A column added here goes last and nullable:
/// the sink adds it to existing tables (`lake::add_missing_columns`), at the end.
pub fn table_schema(table: Table) -> SchemaRef {
    let mut fields: Vec<Field> =
        table.columns().iter().enumerate().map(|(i, c)| Field::new(c.name, arrow_type(c.ty), i != 0)).collect();
    fields.push(Field::new(SOURCE, DataType::Utf8, false));
    fields.push(Field::new(POSITION, DataType::Utf8, false));
    fields.push(Field::new(INGESTED_AT, timestamp_type(), false));
    fields.push(Field::new(RESCUED, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// Builds the record batch of a clean table from its records, all ingested at `ingested_at`.
///
/// One pass over the rows fills every column's builder at once: each row's cells and strings
/// are read while they are in cache, where a pass per column would fetch every row again for
/// each column. The string columns are sized first, from the rows' lengths, so no builder
/// grows (and copies) while it is filled.
pub fn table_batch<'a, R: Borrow<(CleanRecord<'a>, Origin)>>(
    table: Table,
    rows: &[R],
    ingested_at: i64,
) -> Result<RecordBatch, ArrowError> {
    let columns = table.columns();
    let n = rows.len();
    // Bytes of text per column: the clean columns, then `_source`, `_position`, `_rescued`.
    let mut text_bytes = vec![0usize; columns.len() + 3];
    for row in rows {
        let (record, origin) = row.borrow();
        for (bytes, cell) in text_bytes.iter_mut().zip(&record.cells) {
            if let Cell::Str(v) = cell {
                *bytes += v.len();
            }
        }
        let lineage = &mut text_bytes[columns.len()..];
        lineage[0] += origin.source.len();
        lineage[1] += origin.position.len();
        lineage[2] += record.rescued.as_ref().map_or(0, |r| r.as_str().len());
    }
    let mut builders: Vec<ColumnBuilder> =
        columns.iter().zip(&text_bytes).map(|(column, bytes)| ColumnBuilder::new(column.ty, n, *bytes)).collect();
    let lineage = &text_bytes[columns.len()..];
    let mut source = StringBuilder::with_capacity(n, lineage[0]);
    let mut position = StringBuilder::with_capacity(n, lineage[1]);
    let mut rescued = StringBuilder::with_capacity(n, lineage[2]);
    for row in rows {
        let (record, origin) = row.borrow();
        if record.cells.len() != columns.len() {
            return Err(ArrowError::InvalidArgumentError(format!(
                "a {table} record has {} cells for {} columns",
                record.cells.len(),
                columns.len()
            )));
        }
        for (builder, cell) in builders.iter_mut().zip(&record.cells) {
            builder.append(cell)?;
        }
        source.append_value(&origin.source);
        position.append_value(&origin.position);
        rescued.append_option(record.rescued.as_ref().map(|r| r.as_str()));
    }
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len() + 4);
    arrays.extend(builders.into_iter().map(ColumnBuilder::finish));
    arrays.push(Arc::new(source.finish()));
    arrays.push(Arc::new(position.finish()));
    arrays.push(TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC").finish_with(n, ingested_at));
    arrays.push(Arc::new(rescued.finish()));
    RecordBatch::try_new(table_schema(table), arrays)
}

trait FinishWith {
    fn finish_with(self, n: usize, value: i64) -> ArrayRef;
}

impl FinishWith for TimestampMicrosecondBuilder {
    fn finish_with(mut self, n: usize, value: i64) -> ArrayRef {
        self.append_value_n(value, n);
        Arc::new(self.finish())
    }
}

/// The builder of one clean column, by its type.
enum ColumnBuilder {
    Int64(Int64Builder),
    Utf8(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Coordinates(ListBuilder<Float64Builder>),
}

impl ColumnBuilder {
    /// A builder for `len` cells, with `text_bytes` of string data for a text column.
    fn new(ty: ColumnType, len: usize, text_bytes: usize) -> Self {
        match ty {
            ColumnType::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(len)),
            ColumnType::Utf8 => ColumnBuilder::Utf8(StringBuilder::with_capacity(len, text_bytes)),
            ColumnType::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(len).with_timezone("UTC"))
            }
            ColumnType::Coordinates => {
                let DataType::List(item) = coordinates_type() else { unreachable!("coordinates are a list") };
                ColumnBuilder::Coordinates(
                    ListBuilder::with_capacity(Float64Builder::with_capacity(len * 2), len).with_field(item),
                )
            }
        }
    }

    fn append(&mut self, cell: &Cell) -> Result<(), ArrowError> {
        match (self, cell) {
            (ColumnBuilder::Int64(b), Cell::Int(v)) => b.append_value(*v),
            (ColumnBuilder::Int64(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Utf8(b), Cell::Str(v)) => b.append_value(v),
            (ColumnBuilder::Utf8(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Timestamp(b), Cell::Timestamp(v)) => b.append_value(*v),
            (ColumnBuilder::Timestamp(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Coordinates(b), Cell::Coordinates([lat, lon])) => {
                b.values().append_value(*lat);
                b.values().append_value(*lon);
                b.append(true);
            }
            (ColumnBuilder::Coordinates(b), Cell::Null) => b.append_null(),
            (builder, other) => {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "a {:?} column cannot hold {other:?}",
                    builder.column_type()
                )));
            }
        }
        Ok(())
    }

    fn column_type(&self) -> ColumnType {
        match self {
            ColumnBuilder::Int64(_) => ColumnType::Int64,
            ColumnBuilder::Utf8(_) => ColumnType::Utf8,
            ColumnBuilder::Timestamp(_) => ColumnType::Timestamp,
            ColumnBuilder::Coordinates(_) => ColumnType::Coordinates,
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Int64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Utf8(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Coordinates(mut b) => Arc::new(b.finish()),
        }
    }
}

/// A record that could not be cleaned, kept whole with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub table: Table,
    pub origin: Origin,
    pub raw: Vec<u8>,
    pub reason: String,
}

/// The quarantine table: one row per rejected record of any table. A column added here goes
/// last and nullable, like a clean table's (the sink adds it to existing quarantine tables).
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("position", DataType::Utf8, false),
        Field::new("raw", DataType::Binary, false),
        // The raw bytes as text (lossy for invalid UTF-8), so a person can query them.
        Field::new("raw_text", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("quarantined_at", timestamp_type(), false),
        Field::new(RULES_VERSION_COLUMN, DataType::Int32, true),
    ]))
}

pub fn quarantine_batch<R: Borrow<Quarantined>>(rows: &[R], quarantined_at: i64) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut table = StringBuilder::with_capacity(n, n * 4);
    let mut source = StringBuilder::with_capacity(n, n * 48);
    let mut position = StringBuilder::with_capacity(n, n * 56);
    let mut raw = BinaryBuilder::with_capacity(n, n * 256);
    let mut raw_text = StringBuilder::with_capacity(n, n * 256);
    let mut reason = StringBuilder::with_capacity(n, n * 64);
    for row in rows {
        let row = row.borrow();
        table.append_value(row.table.name());
        source.append_value(&row.origin.source);
        position.append_value(&row.origin.position);
        raw.append_value(&row.raw);
        raw_text.append_value(String::from_utf8_lossy(&row.raw));
        reason.append_value(&row.reason);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(table.finish()),
        Arc::new(source.finish()),
        Arc::new(position.finish()),
        Arc::new(raw.finish()),
        Arc::new(raw_text.finish()),
        Arc::new(reason.finish()),
        TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC").finish_with(n, quarantined_at),
        Arc::new(Int32Array::from_value(crate::clean::RULES_VERSION as i32, n)),
    ];
    RecordBatch::try_new(quarantine_schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::clean_bytes;

    fn origin(i: usize) -> Origin {
        Origin { source: "kinesis:streaming-x-geo/shardId-000000000000".into(), position: i.to_string() }
    }

    #[test]
    fn clean_geo_records_build_a_batch_with_the_spec_types() {
        let raws = [
            r#"{"ind": 1, "timestamp": "2020-08-28 03:52:47", "latitude": -89.9787, "longitude": -173.293, "country": "Albania"}"#,
            r#"{"ind": 2}"#,
        ];
        let rows: Vec<_> =
            raws.iter().enumerate().map(|(i, r)| (clean_bytes(Table::Geo, r.as_bytes()).unwrap(), origin(i))).collect();
        let batch = table_batch(Table::Geo, &rows, 42).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let schema = batch.schema();
        let types: Vec<_> = schema.fields().iter().map(|f| (f.name().as_str(), f.data_type().clone())).collect();
        assert_eq!(types[0], ("ind", DataType::Int64));
        assert_eq!(types[2], ("coordinates", coordinates_type()));
        assert_eq!(types[3], ("timestamp", timestamp_type()));
        assert_eq!(types[4..].iter().map(|t| t.0).collect::<Vec<_>>(), [SOURCE, POSITION, INGESTED_AT, RESCUED]);
        assert_eq!(batch.column(2).null_count(), 1);
        assert_eq!(batch.column(3).null_count(), 1);
    }

    #[test]
    fn rescued_fields_are_the_last_column_as_text_and_null_when_there_are_none() {
        let raws = [r#"{"ind": 1, "extra": {"a": [1, 2.50]}, "note": "x"}"#, r#"{"ind": 2}"#];
        let rows: Vec<_> = raws
            .iter()
            .enumerate()
            .map(|(i, r)| (clean_bytes(Table::User, r.as_bytes()).unwrap(), origin(i)))
            .collect();
        let batch = table_batch(Table::User, &rows, 42).unwrap();
        let schema = batch.schema();
        let last = schema.fields().last().unwrap();
        assert_eq!((last.name().as_str(), last.data_type(), last.is_nullable()), (RESCUED, &DataType::Utf8, true));
        let rescued = batch
            .column(batch.num_columns() - 1)
            .as_any()
            .downcast_ref::<deltalake::arrow::array::StringArray>()
            .unwrap();
        assert_eq!(rescued.iter().collect::<Vec<_>>(), [Some(r#"{"extra":{"a": [1, 2.50]},"note":"x"}"#), None]);
    }

    #[test]
    fn every_table_schema_starts_with_its_clean_columns() {
        for table in Table::ALL {
            let schema = table_schema(table);
            assert_eq!(schema.fields().len(), table.columns().len() + 4);
            assert!(!schema.field(0).is_nullable(), "{table}: the key is never null");
            let empty = table_batch::<(CleanRecord<'static>, Origin)>(table, &[], 0).unwrap();
            assert_eq!(empty.num_rows(), 0);
        }
    }

    #[test]
    fn quarantine_rows_keep_raw_bytes_and_reason() {
        let rows = vec![Quarantined {
            table: Table::Pin,
            origin: origin(7),
            raw: b"\xffnot json".to_vec(),
            reason: "invalid JSON".into(),
        }];
        let batch = quarantine_batch(&rows, 1).unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema().field(3).data_type(), &DataType::Binary);
        let version = batch.column_by_name(RULES_VERSION_COLUMN).unwrap();
        let version = version.as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(version.value(0), crate::clean::RULES_VERSION as i32, "the rules that rejected it");
    }
}
