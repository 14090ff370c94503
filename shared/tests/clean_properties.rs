#![cfg(feature = "lake")]
//! Properties of cleaning over arbitrary input: it never panics, and every record it accepts
//! fits the clean schema (an Arrow batch of the table's schema builds from it).

use pinpipe::Table;
use pinpipe::clean::{Cell, ColumnType, clean_bytes};
use pinpipe::schema::{Origin, table_batch};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Values of the kinds the emulator and real clients send, and some they should not.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN", |f| f.is_finite()).prop_map(Value::from),
        prop_oneof![
            Just("211k"),
            Just("1M"),
            Just("92"),
            Just("User Info Error"),
            Just(""),
            Just("1.5k"),
            Just("12kk"),
            Just("2020-08-28 03:52:47"),
            Just("2020-08-28T03:52:47"),
            Just("2020-13-45 99:99:99"),
            Just("Local save in /data/art"),
            Just("N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e"),
            Just("-89.9787"),
        ]
        .prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
        "[0-9]{1,20}[kKmM]?".prop_map(Value::from),
        prop::collection::vec(any::<i32>().prop_map(Value::from), 0..3).prop_map(Value::Array),
    ]
}

/// Every raw field any table reads, from the tables' own rules, and one that none reads.
fn fields() -> Vec<&'static str> {
    let mut fields: Vec<&'static str> = Table::ALL.iter().flat_map(|t| t.raw_fields()).chain(["new_field"]).collect();
    fields.sort_unstable();
    fields.dedup();
    fields
}

fn raw_record() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec((prop::sample::select(fields()), field_value()), 0..14).prop_map(|pairs| {
            let map: Map<String, Value> = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            Value::Object(map).to_string().into_bytes()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => field_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

fn table() -> impl Strategy<Value = Table> {
    prop::sample::select(Table::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn cleaning_never_panics_and_accepted_records_fit_the_schema(table in table(), raw in raw_record()) {
        if let Ok(record) = clean_bytes(table, &raw) {
            prop_assert_eq!(record.cells.len(), table.columns().len());
            prop_assert!(matches!(record.cells[0], Cell::Int(_)), "the key is never null");
            for (cell, column) in record.cells.iter().zip(table.columns()) {
                let fits = matches!(
                    (cell, column.ty),
                    (Cell::Null, _)
                        | (Cell::Int(_), ColumnType::Int64)
                        | (Cell::Str(_), ColumnType::Utf8)
                        | (Cell::Timestamp(_), ColumnType::Timestamp)
                        | (Cell::Coordinates(_), ColumnType::Coordinates)
                );
                prop_assert!(fits, "{}: {:?} does not fit {:?}", column.name, cell, column.ty);
                if let Cell::Str(s) = cell {
                    prop_assert!(!s.trim().is_empty(), "{}: blank strings become null", column.name);
                }
                if let Cell::Coordinates([lat, lon]) = cell {
                    prop_assert!(lat.abs() <= 90.0 && lon.abs() <= 180.0);
                }
            }
            if let Some(rescued) = &record.rescued {
                let object = serde_json::from_str::<Value>(rescued.as_str());
                prop_assert!(object.as_ref().is_ok_and(Value::is_object), "rescued: {}", rescued.as_str());
            }
            let origin = Origin { source: "fuzz".into(), position: "0".into() };
            let batch = table_batch(table, &[(record, origin)], 0);
            prop_assert!(batch.is_ok(), "{:?}", batch.err());
        }
    }
}
