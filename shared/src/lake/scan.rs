//! Reading chosen columns of a table without a query engine: the live files from the table's
//! snapshot, each Parquet file read through the table's object store with only the wanted
//! columns decoded. For what must run in a Lambda, where DataFusion is not linked (the
//! maintenance function's redrive reads the quarantine this way); `pinpipe query` has SQL.
//!
//! The caller names each column with the type it wants: a file written before the table gained
//! a column (see [`super::add_missing_columns`]) reads as null in it, and so does a table that
//! has not gained it yet, so the caller never has to know how old a table is.

use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, new_null_array};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{Field, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::{DeltaTable, DeltaTableError};
use object_store::ObjectStoreExt as _;

use super::LakeError;

/// Calls `each` with every row of `table` as batches of exactly `columns` (in that order, with
/// those types, every one nullable), one file at a time: memory holds one file, not the table.
/// `each` may stop the scan early by returning `Ok(false)`.
pub async fn scan<E: From<LakeError>>(
    table: &DeltaTable,
    columns: &[Field],
    mut each: impl FnMut(RecordBatch) -> Result<bool, E>,
) -> Result<(), E> {
    let uri = table.table_url().to_string();
    let delta = |source: DeltaTableError| LakeError::Delta { uri: uri.clone(), source };
    let schema: SchemaRef =
        Arc::new(Schema::new(columns.iter().map(|f| f.clone().with_nullable(true)).collect::<Vec<_>>()));
    let snapshot = table.snapshot().map_err(delta)?;
    let store = table.object_store();
    for file in snapshot.log_data() {
        let path = deltalake::Path::parse(file.path())
            .map_err(|e| delta(DeltaTableError::GenericError { source: Box::new(e) }))?;
        let bytes = store.get(&path).await.map_err(|e| delta(e.into()))?.bytes().await.map_err(|e| delta(e.into()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| delta(e.into()))?;
        let in_file: Vec<&str> = {
            let file_schema = builder.schema();
            columns.iter().map(|f| f.name().as_str()).filter(|n| file_schema.field_with_name(n).is_ok()).collect()
        };
        let mask = ProjectionMask::columns(builder.parquet_schema(), in_file.iter().copied());
        let reader = builder.with_projection(mask).build().map_err(|e| delta(e.into()))?;
        for batch in reader {
            let batch = batch.map_err(LakeError::from)?;
            let projected = project(&schema, &batch).map_err(LakeError::from)?;
            if !each(projected)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// `batch` as the columns of `schema`: cast to the wanted types, null where the file lacks one.
fn project(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => cast(column, field.data_type()),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    let options = deltalake::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::{Lake, Marked, Position, SourceKey, TableAppender, add_missing_columns};
    use crate::schema::{Origin, Quarantined, quarantine_batch, quarantine_schema};
    use deltalake::arrow::array::{Array, Int32Array, StringArray};
    use deltalake::arrow::datatypes::DataType;

    fn rejected(position: &str) -> Marked<Quarantined> {
        Marked {
            key: SourceKey::Offset(format!("test/{position}")),
            position: Position::parse("1").unwrap(),
            item: Quarantined {
                table: crate::Table::Pin,
                origin: Origin { source: "s".into(), position: position.into() },
                raw: b"{".to_vec(),
                reason: "invalid JSON".into(),
            },
        }
    }

    async fn read(table: DeltaTable) -> Vec<(String, Option<i32>)> {
        let columns =
            [Field::new("position", DataType::Utf8, false), Field::new("rules_version", DataType::Int32, true)];
        let mut rows = Vec::new();
        scan::<LakeError>(&table, &columns, |batch| {
            let positions = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap().clone();
            let versions = batch.column(1).as_any().downcast_ref::<Int32Array>().unwrap().clone();
            for i in 0..batch.num_rows() {
                rows.push((positions.value(i).to_string(), versions.is_valid(i).then(|| versions.value(i))));
            }
            Ok(true)
        })
        .await
        .unwrap();
        rows.sort();
        rows
    }

    #[tokio::test]
    async fn a_column_older_files_lack_reads_null_and_the_others_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().to_str().unwrap());
        // A quarantine from before `rules_version`: its schema and first file lack the column.
        let full = quarantine_schema();
        let old_columns: Vec<usize> = (0..full.fields().len() - 1).collect();
        let old = Arc::new(full.project(&old_columns).unwrap());
        let table = lake.open_or_create("quarantine", &old).await.unwrap();
        let mut appender = TableAppender::new(table).unwrap();
        appender
            .append(
                &[rejected("1")],
                Default::default(),
                |fresh| Ok(quarantine_batch(fresh, 0)?.project(&old_columns)?),
            )
            .await
            .unwrap();
        // Not in the table's schema yet: null.
        assert_eq!(read(lake.open("quarantine").await.unwrap().unwrap()).await, [("1".to_string(), None)]);
        // Gained, and a new row written with it: the old file still reads null.
        let table = add_missing_columns(lake.open("quarantine").await.unwrap().unwrap(), &full).await.unwrap();
        TableAppender::new(table)
            .unwrap()
            .append(&[rejected("2")], Default::default(), |fresh| Ok(quarantine_batch(fresh, 0)?))
            .await
            .unwrap();
        let version = crate::clean::RULES_VERSION as i32;
        assert_eq!(
            read(lake.open("quarantine").await.unwrap().unwrap()).await,
            [("1".to_string(), None), ("2".to_string(), Some(version))]
        );
    }
}
