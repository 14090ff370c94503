//! Structured inputs: JSON objects with the tables' own keys and adversarial values (follower
//! counts like `1.5k` or `9999999999M`, numerals with exponents and long fractions, NaN-ish
//! strings, timestamps at the edges of the calendar, unicode, nesting, duplicate keys), written
//! as JSON text and cleaned through the same entry point and invariants as the `clean` target.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pinpipe::Table;
use std::fmt::Write;

/// Every raw field any table reads, from the tables' own rules, and two that none reads (they
/// go to `_rescued`).
fn keys() -> &'static [&'static str] {
    static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys: Vec<&'static str> =
            Table::ALL.iter().flat_map(|t| t.raw_fields()).chain(["new_field", "extra"]).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    })
}

const PLACEHOLDERS: &[&str] = &[
    "",
    " ",
    "\u{a0}",
    "No Title Data Available",
    "No description available Story format",
    "No description available",
    "Untitled",
    "User Info Error",
    "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e",
    "Image src error.",
    "Local save in ",
    "Local save in /data/mens-fashion",
    "multi-video(story page format)",
    "image",
    "video",
    "null",
    "None",
    "NaN",
    "nan",
    "-NaN",
    "inf",
    "-inf",
    "Infinity",
    "+Infinity",
    "1e309",
    "-0",
    "0x10",
    "1_000",
    "١٢٣",
    "２１１k",
    "lots",
];

const YEARS: &[i32] = &[
    0,
    1,
    99,
    1000,
    1582,
    1677,
    1900,
    1969,
    1970,
    1999,
    2000,
    2015,
    2017,
    2018,
    2020,
    2022,
    2038,
    2262,
    9999,
    10000,
    -1,
    -9999,
    99999,
    262142,
    262143,
    262144,
    -262143,
    -262144,
    292277,
    i32::MAX,
    i32::MIN,
];

#[derive(Arbitrary, Debug)]
struct Input {
    table: u8,
    fields: Vec<(Key, Val)>,
}

#[derive(Arbitrary, Debug)]
enum Key {
    Known(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Val {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// A number token written as is: exponents, long fractions, more digits than i64 holds.
    Numeral(Numeral),
    Text(Text),
    Array(Vec<Val>),
    Object(Vec<(Key, Val)>),
}

#[derive(Arbitrary, Debug)]
struct Numeral {
    negative: bool,
    whole: u64,
    extra_whole_digits: u8,
    fraction: Option<(u8, u64)>,
    exponent: Option<i16>,
}

#[derive(Arbitrary, Debug)]
enum Text {
    Placeholder(u8),
    Count { whole: u64, commas: bool, fraction: Option<(u8, u32)>, suffix: u8 },
    Numeral(Numeral),
    Float(f64),
    Time(Time),
    SavePath { prefixes: u8, category: u8 },
    Digits { len: u8, digit: u8 },
    Raw(String),
    Padded { left: u8, inner: Box<Text>, right: u8 },
    Concat(Box<Text>, Box<Text>),
}

#[derive(Arbitrary, Debug)]
struct Time {
    year: Year,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    fraction: Option<(u8, u32)>,
    separator: u8,
    zone: Zone,
    date_only: bool,
    no_seconds: bool,
}

#[derive(Arbitrary, Debug)]
enum Year {
    Edge(u8),
    Raw(i32),
}

#[derive(Arbitrary, Debug)]
enum Zone {
    Naive,
    Z,
    Offset(i16),
    OffsetNoColon(i16),
}

fn key(k: &Key) -> String {
    match k {
        Key::Known(i) => keys()[usize::from(*i) % keys().len()].to_string(),
        Key::Raw(s) => s.clone(),
    }
}

fn numeral(n: &Numeral) -> String {
    let mut s = String::new();
    if n.negative {
        s.push('-');
    }
    write!(s, "{}", n.whole).unwrap();
    for _ in 0..(n.extra_whole_digits % 24) {
        s.push('9');
    }
    if let Some((zeros, digits)) = n.fraction {
        s.push('.');
        for _ in 0..(zeros % 24) {
            s.push('0');
        }
        write!(s, "{digits}").unwrap();
    }
    if let Some(e) = n.exponent {
        write!(s, "e{}", e % 500).unwrap();
    }
    s
}

fn text(t: &Text, depth: u8) -> String {
    match t {
        Text::Placeholder(i) => PLACEHOLDERS[usize::from(*i) % PLACEHOLDERS.len()].to_string(),
        Text::Count { whole, commas, fraction, suffix } => {
            let digits = whole.to_string();
            let mut s = String::new();
            for (i, c) in digits.chars().enumerate() {
                if *commas && i > 0 && (digits.len() - i) % 3 == 0 {
                    s.push(',');
                }
                s.push(c);
            }
            if let Some((zeros, f)) = fraction {
                s.push('.');
                for _ in 0..(zeros % 20) {
                    s.push('0');
                }
                write!(s, "{f}").unwrap();
            }
            s.push_str(["", "k", "K", "m", "M", "kk", "B", " k", "k ", "\u{212a}"][usize::from(*suffix) % 10]);
            s
        }
        Text::Numeral(n) => numeral(n),
        Text::Float(f) => f.to_string(),
        Text::Time(time) => timestamp(time),
        Text::SavePath { prefixes, category } => {
            let mut s = "Local save in ".repeat(usize::from(prefixes % 3));
            s.push_str(["/data/art", "/data/home-decor", " /data/x ", "", "data"][usize::from(*category) % 5]);
            s
        }
        Text::Digits { len, digit } => char::from(b'0' + digit % 10).to_string().repeat(usize::from(*len)),
        Text::Raw(s) => s.clone(),
        Text::Padded { left, inner, right } => {
            let pad = |n: u8| [" ", "\t", "\u{a0}", "\n", "\u{3000}", ""][usize::from(n) % 6].to_string();
            format!("{}{}{}", pad(*left), if depth < 4 { text(inner, depth + 1) } else { String::new() }, pad(*right))
        }
        Text::Concat(a, b) if depth < 4 => text(a, depth + 1) + &text(b, depth + 1),
        Text::Concat(..) => String::new(),
    }
}

fn timestamp(t: &Time) -> String {
    let year = match t.year {
        Year::Edge(i) => YEARS[usize::from(i) % YEARS.len()],
        Year::Raw(y) => y,
    };
    let mut s = if (0..=9999).contains(&year) { format!("{year:04}") } else { format!("{year:+}") };
    write!(s, "-{:02}-{:02}", t.month % 14, t.day % 33).unwrap();
    if t.date_only {
        return s;
    }
    s.push([' ', 'T', 't', '_'][usize::from(t.separator) % 4]);
    write!(s, "{:02}:{:02}", t.hour % 26, t.minute % 62).unwrap();
    if !t.no_seconds {
        write!(s, ":{:02}", t.second % 62).unwrap();
        if let Some((len, f)) = t.fraction {
            let digits = format!("{f:010}");
            write!(s, ".{}", &digits[..usize::from(len % 11).max(1)]).unwrap();
        }
    }
    match t.zone {
        Zone::Naive => {}
        Zone::Z => s.push('Z'),
        Zone::Offset(m) => {
            let m = i32::from(m) % 1600;
            write!(s, "{}{:02}:{:02}", if m < 0 { '-' } else { '+' }, m.abs() / 60, m.abs() % 60).unwrap()
        }
        Zone::OffsetNoColon(m) => {
            let m = i32::from(m) % 1600;
            write!(s, "{}{:02}{:02}", if m < 0 { '-' } else { '+' }, m.abs() / 60, m.abs() % 60).unwrap()
        }
    }
    s
}

fn value(v: &Val, out: &mut String, depth: u8) {
    match v {
        Val::Null => out.push_str("null"),
        Val::Bool(b) => write!(out, "{b}").unwrap(),
        Val::Int(i) => write!(out, "{i}").unwrap(),
        Val::UInt(u) => write!(out, "{u}").unwrap(),
        Val::Float(f) => out.push_str(&serde_json::Value::from(*f).to_string()),
        Val::Numeral(n) => out.push_str(&numeral(n)),
        Val::Text(t) => out.push_str(&serde_json::Value::from(text(t, 0)).to_string()),
        Val::Array(items) if depth < 6 => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                value(item, out, depth + 1);
            }
            out.push(']');
        }
        Val::Object(fields) if depth < 6 => object(fields, out, depth + 1),
        Val::Array(_) | Val::Object(_) => out.push_str("[]"),
    }
}

/// Written by hand, not through `serde_json::Map`, so that keys may repeat.
fn object(fields: &[(Key, Val)], out: &mut String, depth: u8) {
    out.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(key(k)).to_string());
        out.push(':');
        value(v, out, depth);
    }
    out.push('}');
}

fuzz_target!(|input: Input| {
    let mut raw = String::new();
    object(&input.fields, &mut raw, 0);
    pinpipe_fuzz::check(pinpipe_fuzz::table_of(input.table), raw.as_bytes());
});
