//! The value parsers the rules use: text and its placeholders, integers, follower counts
//! (`1.5k`), save paths, timestamps and coordinates' numbers.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::raw::FieldValue;
use super::{Rejection, reject};

/// A string value with placeholders and blanks as null. Numbers and booleans become their
/// text (the emulator serialises database rows loosely); arrays and objects are rejected.
pub(super) fn string<'a>(value: &FieldValue<'a>, nulls: &[&str]) -> Result<Option<Cow<'a, str>>, Rejection> {
    let s = match value {
        FieldValue::Null => return Ok(None),
        // Text without escapes is a slice of the record's bytes, and stays one.
        FieldValue::Str(Cow::Borrowed(s)) => Cow::Borrowed(*s),
        FieldValue::Str(Cow::Owned(s)) => Cow::Owned(s.clone()),
        FieldValue::Number(n) => Cow::Owned(n.to_string()),
        FieldValue::Bool(b) => Cow::Owned(b.to_string()),
        other => return reject(format!("expected a string, found {}", other.kind())),
    };
    let trimmed = s.trim();
    if trimmed.is_empty() || nulls.contains(&trimmed) {
        return Ok(None);
    }
    Ok(Some(s))
}

/// An integer given as a JSON number (integral) or a string of digits; blank is null.
pub(super) fn integer(value: &FieldValue) -> Result<Option<i64>, Rejection> {
    match value {
        FieldValue::Null => Ok(None),
        FieldValue::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            _ => reject(format!("{n} is not an integer")),
        },
        FieldValue::Str(s) => {
            let t = s.trim();
            if t.is_empty() {
                return Ok(None);
            }
            match decimal_integer(t) {
                Some(v) => Ok(Some(v)),
                None => reject(format!("cannot convert {s:?} to an integer")),
            }
        }
        other => reject(format!("expected an integer, found {}", other.kind())),
    }
}

/// The integer a decimal numeral writes exactly (`42`, `+42`, `42.000`, `4.2e1`), if it is
/// one and fits an i64. Going through f64 would round `4.0000000000000000001` to 4.
fn decimal_integer(t: &str) -> Option<i64> {
    let (negative, unsigned) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exponent) = unsigned.split_once(['e', 'E']).map_or((unsigned, None), |(m, e)| (m, Some(e)));
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !is_digits(whole) || !is_digits(fraction) {
        return None;
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let magnitude = e.strip_prefix(['+', '-']).unwrap_or(e);
            if magnitude.is_empty() || !is_digits(magnitude) {
                return None;
            }
            // Capped: far past the 19 digits an i64 has, the exact size no longer matters.
            let significant = magnitude.trim_start_matches('0');
            let magnitude = if significant.len() > 6 { 1_000_000 } else { significant.parse().unwrap_or(0) };
            if e.starts_with('-') { -magnitude } else { magnitude }
        }
    };
    // The digits before `point` are the integer part; every digit after it must be 0.
    let point = i64::try_from(whole.len()).ok()?.saturating_add(exponent);
    let limit = i128::from(i64::MAX) + 1;
    let mut value: i128 = 0;
    let mut position: i64 = 0;
    for digit in whole.bytes().chain(fraction.bytes()).map(|b| i128::from(b - b'0')) {
        if position < point {
            value = value * 10 + digit;
            if value > limit {
                return None;
            }
        } else if digit != 0 {
            return None;
        }
        position += 1;
    }
    while value != 0 && position < point {
        value *= 10;
        if value > limit {
            return None;
        }
        position += 1;
    }
    i64::try_from(if negative { -value } else { value }).ok()
}

/// A finite float given as a JSON number or a numeric string; blank is null.
pub(super) fn float(value: &FieldValue) -> Result<Option<f64>, Rejection> {
    let f = match value {
        FieldValue::Null => return Ok(None),
        FieldValue::Number(n) => n.as_f64(),
        FieldValue::Str(s) if s.trim().is_empty() => return Ok(None),
        FieldValue::Str(s) => s.trim().parse::<f64>().ok(),
        other => return reject(format!("expected a number, found {}", other.kind())),
    };
    match f {
        Some(f) if f.is_finite() => Ok(Some(f)),
        _ => reject(format!("cannot convert {value} to a number")),
    }
}

/// Follower counts as the source shows them: `92`, `211k`, `1M` (also `1.5k`, `12,345`).
pub(super) fn follower_count(value: &FieldValue, nulls: &[&str]) -> Result<Option<i64>, Rejection> {
    let FieldValue::Str(s) = value else {
        return match integer(value)? {
            Some(n) if n < 0 => reject(format!("cannot convert {value} to a follower count (a count is not negative)")),
            n => Ok(n),
        };
    };
    let t = s.trim();
    if t.is_empty() || nulls.contains(&t) {
        return Ok(None);
    }
    let (number, multiplier) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1_000i64),
        Some((i, 'M' | 'm')) => (&t[..i], 1_000_000i64),
        _ => (t, 1),
    };
    let number = number.trim();
    let bad =
        || Rejection(format!("cannot convert {s:?} to a follower count (expected digits with an optional k or M)"));
    // Commas group digits (`12,345`) and count for nothing, wherever they are: read past them
    // rather than copy the number without them, as every pin has a follower count.
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_and_commas = |part: &str| part.bytes().all(|b| b.is_ascii_digit() || b == b',');
    let digit_count = |part: &str| part.bytes().filter(u8::is_ascii_digit).count();
    if !digits_and_commas(whole) || !digits_and_commas(fraction) || digit_count(whole) == 0 {
        return Err(bad());
    }
    // Exact decimal arithmetic: 1.5k is 1500, but 1.2345k is not a whole number of followers.
    let scale = 10i64.checked_pow(digit_count(fraction) as u32).ok_or_else(bad)?;
    let digits = whole
        .bytes()
        .chain(fraction.bytes())
        .filter(u8::is_ascii_digit)
        .try_fold(0i64, |value, digit| value.checked_mul(10)?.checked_add(i64::from(digit - b'0')))
        .ok_or_else(bad)?;
    let scaled = digits.checked_mul(multiplier).ok_or_else(bad)?;
    if scaled % scale != 0 {
        return Err(bad());
    }
    Ok(Some(scaled / scale))
}

/// `Local save in /data/x` → `/data/x`. The prefix goes however often it repeats (a value
/// cleaned twice, or written twice), so no clean value still starts with it; blank is null.
pub(super) fn save_path(s: Cow<str>) -> Option<Cow<str>> {
    const PREFIX: &str = "Local save in ";
    let mut rest = s.trim_start();
    if !rest.starts_with(PREFIX) {
        return Some(s);
    }
    while let Some(after) = rest.strip_prefix(PREFIX) {
        rest = after.trim_start();
    }
    let path = rest.trim_end();
    if path.is_empty() {
        return None;
    }
    // The path is a slice of `s`: borrowed from the record's bytes when `s` is.
    let start = path.as_ptr() as usize - s.as_ptr() as usize;
    let range = start..start + path.len();
    Some(match s {
        Cow::Borrowed(s) => Cow::Borrowed(&s[range]),
        Cow::Owned(s) => Cow::Owned(s[range].to_string()),
    })
}

/// Timestamps as `2020-08-28 03:52:47` or ISO 8601 (`T`, fraction, `Z` or offset); naive ones are UTC.
pub(super) fn timestamp(value: &FieldValue) -> Result<Option<i64>, Rejection> {
    let s = match value {
        FieldValue::Null => return Ok(None),
        FieldValue::Str(s) => s.trim(),
        other => return reject(format!("expected a timestamp string, found {}", other.kind())),
    };
    if s.is_empty() {
        return Ok(None);
    }
    parse_timestamp(s).map(Some).ok_or_else(|| Rejection(format!("cannot parse {s:?} as a timestamp")))
}

/// A timestamp's microseconds since the epoch, in any of the shapes [`timestamp`] takes.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    plain_timestamp(s).or_else(|| any_timestamp(s))
}

/// `YYYY-MM-DD HH:MM:SS` (or with `T`), naive, so UTC: the shape nearly every record's
/// timestamp has, read without chrono's format parser, which reads its format string anew on
/// every call (a fifth of a geo batch's time). Any other shape, and any date or time this does
/// not take (`02-30`, a leap second), goes [`any_timestamp`]'s way and gets its answer.
fn plain_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let shaped = b.len() == 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b' ' || b[10] == b'T')
        && b[13] == b':'
        && b[16] == b':';
    if !shaped {
        return None;
    }
    let number =
        |digits: &[u8]| digits.iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')));
    let date = NaiveDate::from_ymd_opt(number(&b[0..4])? as i32, number(&b[5..7])?, number(&b[8..10])?)?;
    let time = date.and_hms_opt(number(&b[11..13])?, number(&b[14..16])?, number(&b[17..19])?)?;
    Some(time.and_utc().timestamp_micros())
}

fn any_timestamp(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Some(t.with_timezone(&Utc).timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use serde_json::json;

    use super::super::Cell;
    use super::super::test_support::{cell, clean_json, pin, rejection};
    use super::{any_timestamp, parse_timestamp, plain_timestamp};
    use crate::Table;

    #[test]
    fn empty_strings_become_null_in_every_column() {
        for column in [
            "unique_id",
            "title",
            "description",
            "poster_name",
            "tag_list",
            "is_image_or_video",
            "image_src",
            "save_location",
            "category",
            "follower_count",
            "downloaded",
        ] {
            assert_eq!(cell(Table::Pin, pin(json!({ column: "" })), column), Cell::Null, "{column}");
            assert_eq!(cell(Table::Pin, pin(json!({ column: "  " })), column), Cell::Null, "{column} blank");
        }
        assert_eq!(cell(Table::Geo, json!({"ind": 1, "country": ""}), "country"), Cell::Null);
    }

    #[test]
    fn follower_counts_scale_k_and_m() {
        for (raw, expected) in [
            ("211k", 211_000),
            ("1M", 1_000_000),
            ("92", 92),
            ("0", 0),
            ("1.5k", 1_500),
            ("12,345", 12_345),
            ("7K", 7_000),
            (" 3k ", 3_000),
        ] {
            assert_eq!(
                cell(Table::Pin, pin(json!({"follower_count": raw})), "follower_count"),
                Cell::Int(expected),
                "{raw}"
            );
        }
        assert_eq!(cell(Table::Pin, pin(json!({"follower_count": 92})), "follower_count"), Cell::Int(92));
    }

    #[test]
    fn unconvertible_follower_counts_are_rejected() {
        for raw in ["lots", "k", "1.2345k", "12kk", "-5", "1e3"] {
            let why = rejection(Table::Pin, pin(json!({"follower_count": raw})));
            assert!(why.starts_with("follower_count: cannot convert"), "{raw}: {why}");
        }
    }

    /// Found by fuzzing (`fuzz/`, target `clean_structured`): `"-5"` was rejected but the
    /// number -5 was accepted as a follower count.
    #[test]
    fn negative_follower_counts_are_rejected_as_numbers_too() {
        assert_eq!(
            rejection(Table::Pin, pin(json!({"follower_count": -38371}))),
            "follower_count: cannot convert -38371 to a follower count (a count is not negative)"
        );
        assert!(
            rejection(Table::Pin, pin(json!({"follower_count": -5.0}))).starts_with("follower_count: cannot convert")
        );
        assert_eq!(cell(Table::Pin, pin(json!({"follower_count": 0})), "follower_count"), Cell::Int(0));
        assert_eq!(cell(Table::Pin, pin(json!({"follower_count": -0.0})), "follower_count"), Cell::Int(0));
    }

    #[test]
    fn numbers_given_as_strings_are_integers() {
        let record = clean_json(Table::Pin, pin(json!({"index": "7528", "downloaded": "1"}))).unwrap();
        assert_eq!(record.ind(), 7528);
        assert_eq!(cell(Table::Pin, pin(json!({"downloaded": "1"})), "downloaded"), Cell::Int(1));
        assert_eq!(cell(Table::Pin, pin(json!({"index": 7528.0})), "ind"), Cell::Int(7528));
        assert_eq!(cell(Table::User, json!({"ind": "3", "age": "20"}), "age"), Cell::Int(20));
    }

    /// Found by fuzzing (`fuzz/`, target `clean_structured`): integers given as text went
    /// through f64, so `"2074688218111.000000000003437487075"` was accepted as 2074688218111.
    #[test]
    fn integers_given_as_text_are_exact_or_rejected() {
        for (raw, expected) in [
            ("42", 42),
            ("+42", 42),
            ("-0", 0),
            ("42.000", 42),
            ("5.", 5),
            ("1e3", 1000),
            ("4.2E1", 42),
            ("150e-1", 15),
            ("0e999999999999999999999", 0),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
            ("1e18", 1_000_000_000_000_000_000),
        ] {
            assert_eq!(cell(Table::User, json!({"ind": 1, "age": raw}), "age"), Cell::Int(expected), "{raw}");
        }
        for raw in [
            "2074688218111.000000000003437487075",
            "4.0000000000000000001",
            "1e-400",
            "15e-1",
            "9223372036854775808",
            "-9223372036854775809",
            "1e19",
            "1e999999999999",
            "inf",
            "NaN",
            ".",
            "e5",
            "1e",
            "+-1",
            "0x10",
            "1_000",
        ] {
            let why = rejection(Table::User, json!({"ind": 1, "age": raw}));
            assert_eq!(why, format!("age: cannot convert {raw:?} to an integer"));
        }
        assert!(rejection(Table::Pin, pin(json!({"index": "7528.5"}))).starts_with("ind: cannot convert"));
    }

    #[test]
    fn save_location_keeps_only_the_path() {
        assert_eq!(
            cell(Table::Pin, pin(json!({"save_location": "Local save in /data/mens-fashion"})), "save_location"),
            Cell::Str("/data/mens-fashion".into())
        );
        assert_eq!(
            cell(Table::Pin, pin(json!({"save_location": "/data/art"})), "save_location"),
            Cell::Str("/data/art".into())
        );
        assert_eq!(cell(Table::Pin, pin(json!({"save_location": "Local save in "})), "save_location"), Cell::Null);
    }

    /// Found by fuzzing (`fuzz/`, target `clean_structured`): a doubled prefix kept one
    /// `Local save in ` in the clean value, and a leading blank kept all of it.
    #[test]
    fn save_location_loses_a_repeated_or_indented_prefix() {
        for raw in [
            "Local save in Local save in /data/home-decor",
            "  Local save in /data/home-decor",
            "Local save in  Local save in /data/home-decor ",
        ] {
            assert_eq!(
                cell(Table::Pin, pin(json!({"save_location": raw})), "save_location"),
                Cell::Str("/data/home-decor".into()),
                "{raw:?}"
            );
        }
        assert_eq!(
            cell(Table::Pin, pin(json!({"save_location": "Local save in Local save in "})), "save_location"),
            Cell::Null
        );
    }

    #[test]
    fn strings_keep_unicode_and_non_breaking_spaces() {
        let description = "Cozy\u{a0}room… 居心地";
        assert_eq!(
            cell(Table::Pin, pin(json!({"description": description})), "description"),
            Cell::Str(description.into())
        );
    }

    #[test]
    fn the_plain_timestamp_reader_agrees_with_chronos_or_leaves_the_text_to_it() {
        let mut texts: Vec<String> = [
            "2020-02-29 23:59:59",
            "2019-02-29 12:00:00",
            "2020-02-30 00:00:00",
            "2020-13-01 00:00:00",
            "2020-00-10 00:00:00",
            "2020-01-00 00:00:00",
            "2020-01-01 24:00:00",
            "2020-01-01 23:60:00",
            "2016-12-31 23:59:60",
            "0000-01-01 00:00:00",
            "9999-12-31T23:59:59",
            "2020-01-01x00:00:00",
            "2020-01-01 00:00:0a",
            "+020-01-01 00:00:00",
            "2020-01-01 00:00:00 ",
            "２０２０-01-01 00:00",
        ]
        .map(String::from)
        .to_vec();
        // Every day of a leap year and of a common one, at hours, minutes and seconds that
        // touch each digit.
        for (year, days) in [(2024, 366), (2023, 365)] {
            let first = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
            for day in 0..days {
                let date = first + chrono::Days::new(day);
                let (h, m, s) = (day % 24, (day * 7) % 60, (day * 13) % 60);
                let sep = if day % 2 == 0 { ' ' } else { 'T' };
                texts.push(format!("{}{sep}{h:02}:{m:02}:{s:02}", date.format("%Y-%m-%d")));
            }
        }
        for text in &texts {
            if let Some(micros) = plain_timestamp(text) {
                assert_eq!(Some(micros), any_timestamp(text), "{text}");
            }
            assert_eq!(parse_timestamp(text), any_timestamp(text), "{text}");
        }
        assert!(plain_timestamp("2020-08-28 03:52:47").is_some(), "the common shape takes the plain way");
    }

    #[test]
    fn space_separated_and_iso_timestamps_are_the_same_instant() {
        let expected = Cell::Timestamp(1_598_586_767_000_000);
        for raw in [
            "2020-08-28 03:52:47",
            "2020-08-28T03:52:47",
            "2020-08-28T03:52:47Z",
            "2020-08-28T05:52:47+02:00",
            "2020-08-28 03:52:47.000",
        ] {
            assert_eq!(cell(Table::Geo, json!({"ind": 1, "timestamp": raw}), "timestamp"), expected, "{raw}");
        }
        assert_eq!(
            cell(Table::Geo, json!({"ind": 1, "timestamp": "2020-08-28T03:52:47.25"}), "timestamp"),
            Cell::Timestamp(1_598_586_767_250_000)
        );
    }
}
