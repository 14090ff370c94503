//! The invariants both fuzz targets check on one raw record, through the consumer's own entry
//! point (`clean_bytes`, as `sink.rs` and the CLI call it).
//!
//! - cleaning never panics, and `clean_bytes` agrees with `decode` + `clean`;
//! - an accepted record fits the clean schema: one cell per column, a non-null integer key,
//!   every cell of its column's type, no blank strings, no placeholder left in its column,
//!   no `Local save in ` prefix, coordinates finite and in range, follower counts not negative;
//! - an integer that came as text is exactly the number the text says (no rounding);
//! - `to_json_line` is a JSON object whose values are the cells, and its timestamps read back
//!   through the same rules to the same instant;
//! - a clean `pin` line cleans again to the same record (the rules are idempotent), its
//!   rescued fields, if any, rescued once more under `_rescued`.

use pinpipe::Table;
use pinpipe::clean::{Cell, CleanRecord, ColumnType, Rule, clean, clean_bytes, decode};
use serde_json::{Map, Value};

/// The table a fuzz input's first byte picks.
pub fn table_of(byte: u8) -> Table {
    Table::ALL[usize::from(byte) % Table::ALL.len()]
}

/// Cleans `raw` as a record of `table` and checks every invariant; panics on a violation.
pub fn check(table: Table, raw: &[u8]) {
    let result = clean_bytes(table, raw);
    match decode(raw) {
        Ok(map) => assert_eq!(clean(table, &map), result, "clean_bytes disagrees with decode + clean"),
        Err(why) => assert_eq!(result, Err(why), "clean_bytes accepted what decode rejects"),
    }
    let Ok(record) = result else { return };
    let map = decode(raw).expect("decoded above");
    check_record(table, &map, &record);
    check_json_line(table, &record);
}

fn check_record(table: Table, raw: &Map<String, Value>, record: &CleanRecord<'_>) {
    let columns = table.columns();
    assert_eq!(record.cells.len(), columns.len(), "one cell per column");
    assert!(matches!(record.cells[0], Cell::Int(_)), "the key is a non-null integer: {:?}", record.cells[0]);
    let _ = record.ind();
    for (cell, column) in record.cells.iter().zip(columns) {
        let name = column.name;
        let fits = matches!(
            (cell, column.ty),
            (Cell::Null, _)
                | (Cell::Int(_), ColumnType::Int64)
                | (Cell::Str(_), ColumnType::Utf8)
                | (Cell::Timestamp(_), ColumnType::Timestamp)
                | (Cell::Coordinates(_), ColumnType::Coordinates)
        );
        assert!(fits, "{name}: {cell:?} does not fit {:?}", column.ty);
        if let Cell::Str(s) = cell {
            assert!(!s.trim().is_empty(), "{name}: blank string kept");
        }
        match (column.rule, cell) {
            (Rule::Text { nulls, .. }, Cell::Str(s)) => {
                assert!(!nulls.contains(&s.trim()), "{name}: placeholder {s:?} kept")
            }
            (Rule::FollowerCount { nulls, .. }, Cell::Int(v)) => {
                assert!(*v >= 0, "{name}: negative follower count {v} from {:?}", raw.get("follower_count"));
                let _ = nulls;
            }
            (Rule::SavePath(_), Cell::Str(s)) => {
                assert!(!s.starts_with("Local save in "), "{name}: prefix kept in {s:?}")
            }
            (Rule::Coordinates(_), Cell::Coordinates([lat, lon])) => {
                assert!(lat.is_finite() && lon.is_finite(), "{name}: not finite");
                assert!(lat.abs() <= 90.0 && lon.abs() <= 180.0, "{name}: out of range {lat},{lon}");
            }
            (Rule::Int(field), Cell::Int(v)) => exact_integer_check(name, raw.get(field), *v),
            (Rule::Key(fields), Cell::Int(v)) => {
                let given = fields.iter().find_map(|f| raw.get(*f).filter(|v| !v.is_null()));
                exact_integer_check(name, given, *v)
            }
            _ => {}
        }
    }
}

/// An integer cell read from a string must be exactly the value the string writes.
fn exact_integer_check(name: &str, given: Option<&Value>, v: i64) {
    match given {
        Some(Value::String(s)) => {
            let exact = exact_decimal_integer(s.trim());
            assert_eq!(exact, Some(v as i128), "{name}: {s:?} became {v}");
        }
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                assert_eq!(i, v, "{name}: {n} became {v}");
            } else {
                let f = n.as_f64().expect("a JSON number");
                assert!(f.fract() == 0.0 && f == v as f64, "{name}: {n} became {v}");
            }
        }
        other => panic!("{name}: integer {v} from {other:?}"),
    }
}

/// The exact value of a decimal numeral (`[+-]digits[.digits][e[+-]digits]`, the finite
/// syntax Rust's float parser takes) if it is an integer of at most 38 digits.
pub fn exact_decimal_integer(s: &str) -> Option<i128> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Saturate: an exponent past this many digits cannot give a small integer anyway.
            let significant = digits.trim_start_matches('0');
            let magnitude: i64 =
                if significant.is_empty() { 0 } else { significant.parse().unwrap_or(1 << 40).min(1 << 40) };
            if e.starts_with('-') { -magnitude } else { magnitude }
        }
    };
    let digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).map(|b| b - b'0').collect();
    let point = whole.len() as i64 + exponent; // digits[..point] is the integer part
    let mut value: i128 = 0;
    for (i, d) in digits.iter().enumerate() {
        if (i as i64) < point {
            value = value.checked_mul(10)?.checked_add(i128::from(*d))?;
        } else if *d != 0 {
            return None; // a non-zero digit after the point
        }
    }
    let len = digits.len() as i64;
    if point > len && value != 0 {
        for _ in 0..(point - len) {
            value = value.checked_mul(10)?;
        }
    }
    Some(if negative { -value } else { value })
}

fn check_json_line(table: Table, record: &CleanRecord<'_>) {
    let line = record.to_json_line(table);
    let parsed: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("to_json_line is not JSON ({e}): {line}"));
    let object = parsed.as_object().unwrap_or_else(|| panic!("to_json_line is not an object: {line}"));
    let rescued = record.rescued.as_ref().map(|r| serde_json::from_str::<Value>(r.as_str()).expect("rescued JSON"));
    assert_eq!(object.len(), table.columns().len() + usize::from(rescued.is_some()), "one key per column: {line}");
    if let Some(rescued) = &rescued {
        assert!(rescued.is_object(), "rescued fields are an object: {line}");
        assert_eq!(object.get("_rescued"), Some(rescued), "{line}");
    }
    for (column, cell) in table.columns().iter().zip(&record.cells) {
        let value = object.get(column.name).unwrap_or_else(|| panic!("{} missing from {line}", column.name));
        match cell {
            Cell::Null => assert!(value.is_null(), "{}: {value}", column.name),
            Cell::Int(v) => assert_eq!(value.as_i64(), Some(*v), "{}: {line}", column.name),
            Cell::Str(s) => assert_eq!(value.as_str(), Some(s.as_ref()), "{}: {line}", column.name),
            Cell::Coordinates([lat, lon]) => {
                let pair = value.as_array().filter(|a| a.len() == 2).unwrap_or_else(|| panic!("{line}"));
                for (got, want) in pair.iter().zip([lat, lon]) {
                    let got = got.as_f64().unwrap_or_else(|| panic!("{line}"));
                    // serde_json's default float parser may be one ulp off the shortest repr.
                    assert!((got - want).abs() <= want.abs() * 1e-15, "{}: {got} != {want}", column.name);
                }
            }
            Cell::Timestamp(us) => {
                let text = value.as_str().unwrap_or_else(|| panic!("{}: a timestamp is a string: {line}", column.name));
                let raw = serde_json::json!({"ind": 0, "timestamp": text}).to_string();
                let again = clean_bytes(Table::Geo, raw.as_bytes());
                let again = again.unwrap_or_else(|e| panic!("{}: {text:?} does not read back: {e}", column.name));
                assert_eq!(again.cells[3], Cell::Timestamp(*us), "{}: {text:?} reads back differently", column.name);
            }
        }
    }
    if table == Table::Pin {
        let again = clean_bytes(Table::Pin, line.as_bytes());
        let again = again.unwrap_or_else(|e| panic!("a clean pin is rejected ({e}): {line}"));
        assert_eq!(again.cells, record.cells, "cleaning a clean pin changes it: {line}");
        let rescued_again = again.rescued.map(|r| serde_json::from_str::<Value>(r.as_str()).expect("rescued JSON"));
        assert_eq!(rescued_again, rescued.map(|r| serde_json::json!({"_rescued": r})), "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::exact_decimal_integer as e;

    #[test]
    fn exact_decimals() {
        assert_eq!(e("7528"), Some(7528));
        assert_eq!(e("-5"), Some(-5));
        assert_eq!(e("+5"), Some(5));
        assert_eq!(e("1e3"), Some(1000));
        assert_eq!(e("1.0"), Some(1));
        assert_eq!(e("5."), Some(5));
        assert_eq!(e(".0"), Some(0));
        assert_eq!(e("1.5"), None);
        assert_eq!(e("15e-1"), None);
        assert_eq!(e("150e-1"), Some(15));
        assert_eq!(e("1e-400"), None);
        assert_eq!(e("0e999999999999999999999"), Some(0));
        assert_eq!(e("4.0000000000000000001"), None);
        assert_eq!(e("inf"), None);
        assert_eq!(e("e5"), None);
        assert_eq!(e(""), None);
    }
}
