//! The floor: what any consumer of these events must do at least. Deserialise the invoke payload
//! (base64-decoding each record), parse each record's JSON into typed fields, and write one
//! Snappy Parquet file with the clean table's schema, laid out as the consumer lays out its files
//! (dictionaries only where values repeat). No cleaning rules, no quarantine, no Delta log, no
//! exactly-once bookkeeping.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::kinesis::KinesisEvent;
use deltalake::arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::parquet::arrow::ArrowWriter;
use pinpipe::Table;
use pinpipe::lake::file_layout::writer_properties;
use pinpipe::schema::table_schema;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::json;

use crate::{Args, Error, median, peak_rss};

/// One JSON scalar, borrowed from the input where it can be.
#[derive(Debug)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Null,
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON scalar")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v as i64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v as i64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl Scalar<'_> {
    fn int(&self) -> Option<i64> {
        match self {
            Scalar::Int(v) => Some(*v),
            Scalar::Float(f) => Some(*f as i64),
            Scalar::Str(s) => {
                let (digits, scale) = match s.as_bytes().last() {
                    Some(b'k') => (&s[..s.len() - 1], 1_000),
                    Some(b'M') => (&s[..s.len() - 1], 1_000_000),
                    _ => (&s[..], 1),
                };
                digits.parse::<i64>().ok().map(|v| v * scale)
            }
            Scalar::Null => None,
        }
    }

    fn float(&self) -> Option<f64> {
        match self {
            Scalar::Int(v) => Some(*v as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => s.parse().ok(),
            Scalar::Null => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// pinpipe's own timestamp reader: the floor gets every advantage the consumer has.
    fn timestamp(&self) -> Option<i64> {
        pinpipe::clean::parse_timestamp(self.str()?)
    }
}

type Field_<'a> = Option<Scalar<'a>>;

#[derive(Deserialize)]
struct Pin<'a> {
    #[serde(borrow)]
    index: Field_<'a>,
    #[serde(borrow)]
    unique_id: Field_<'a>,
    #[serde(borrow)]
    title: Field_<'a>,
    #[serde(borrow)]
    description: Field_<'a>,
    #[serde(borrow)]
    follower_count: Field_<'a>,
    #[serde(borrow)]
    poster_name: Field_<'a>,
    #[serde(borrow)]
    tag_list: Field_<'a>,
    #[serde(borrow)]
    is_image_or_video: Field_<'a>,
    #[serde(borrow)]
    image_src: Field_<'a>,
    #[serde(borrow)]
    save_location: Field_<'a>,
    #[serde(borrow)]
    category: Field_<'a>,
    #[serde(borrow)]
    downloaded: Field_<'a>,
}

#[derive(Deserialize)]
struct Geo<'a> {
    #[serde(borrow)]
    ind: Field_<'a>,
    #[serde(borrow)]
    country: Field_<'a>,
    #[serde(borrow)]
    latitude: Field_<'a>,
    #[serde(borrow)]
    longitude: Field_<'a>,
    #[serde(borrow)]
    timestamp: Field_<'a>,
}

#[derive(Deserialize)]
struct User<'a> {
    #[serde(borrow)]
    ind: Field_<'a>,
    #[serde(borrow)]
    first_name: Field_<'a>,
    #[serde(borrow)]
    last_name: Field_<'a>,
    #[serde(borrow)]
    age: Field_<'a>,
    #[serde(borrow)]
    date_joined: Field_<'a>,
}

fn int(f: &Field_<'_>) -> Option<i64> {
    f.as_ref().and_then(Scalar::int)
}

fn text<'a>(f: &'a Field_<'_>) -> Option<&'a str> {
    f.as_ref().and_then(Scalar::str)
}

fn ts(f: &Field_<'_>) -> Option<i64> {
    f.as_ref().and_then(Scalar::timestamp)
}

/// Column builders for a table's clean schema.
enum Col {
    Int(Int64Builder),
    Str(StringBuilder),
    Ts(TimestampMicrosecondBuilder),
    Coords(ListBuilder<Float64Builder>),
}

impl Col {
    fn finish(self) -> ArrayRef {
        match self {
            Col::Int(mut b) => Arc::new(b.finish()),
            Col::Str(mut b) => Arc::new(b.finish()),
            Col::Ts(mut b) => Arc::new(b.finish()),
            Col::Coords(mut b) => Arc::new(b.finish()),
        }
    }
    fn int(&mut self, v: Option<i64>) {
        if let Col::Int(b) = self {
            b.append_option(v)
        }
    }
    fn str(&mut self, v: Option<&str>) {
        if let Col::Str(b) = self {
            b.append_option(v)
        }
    }
    fn ts(&mut self, v: Option<i64>) {
        if let Col::Ts(b) = self {
            b.append_option(v)
        }
    }
}

/// Parses one event's records into a batch with the table's schema.
fn batch(table: Table, event: &KinesisEvent) -> Result<RecordBatch, Error> {
    let schema = table_schema(table);
    let n = event.records.len();
    let mut cols: Vec<Col> =
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int64 => Col::Int(Int64Builder::with_capacity(n)),
                DataType::Utf8 => Col::Str(StringBuilder::with_capacity(n, n * 32)),
                DataType::Timestamp(..) => Col::Ts(TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC")),
                DataType::List(_) => Col::Coords(
                    ListBuilder::with_capacity(Float64Builder::with_capacity(2 * n), n)
                        .with_field(Arc::new(Field::new("element", DataType::Float64, true))),
                ),
                other => unreachable!("no {other} column"),
            })
            .collect();
    let width = cols.len();
    let mut name = String::new();
    for record in &event.records {
        let data = record.kinesis.data.as_slice();
        match table {
            Table::Pin => {
                let Ok(p) = serde_json::from_slice::<Pin>(data) else { continue };
                cols[0].int(int(&p.index));
                for (i, f) in [&p.unique_id, &p.title, &p.description].into_iter().enumerate() {
                    cols[1 + i].str(text(f));
                }
                cols[4].int(int(&p.follower_count));
                for (i, f) in
                    [&p.poster_name, &p.tag_list, &p.is_image_or_video, &p.image_src, &p.save_location, &p.category]
                        .into_iter()
                        .enumerate()
                {
                    cols[5 + i].str(text(f));
                }
                cols[11].int(int(&p.downloaded));
            }
            Table::Geo => {
                let Ok(g) = serde_json::from_slice::<Geo>(data) else { continue };
                cols[0].int(int(&g.ind));
                cols[1].str(text(&g.country));
                if let Col::Coords(b) = &mut cols[2] {
                    b.values().append_option(g.latitude.as_ref().and_then(Scalar::float));
                    b.values().append_option(g.longitude.as_ref().and_then(Scalar::float));
                    b.append(true);
                }
                cols[3].ts(ts(&g.timestamp));
            }
            Table::User => {
                let Ok(u) = serde_json::from_slice::<User>(data) else { continue };
                cols[0].int(int(&u.ind));
                name.clear();
                name.push_str(text(&u.first_name).unwrap_or(""));
                name.push(' ');
                name.push_str(text(&u.last_name).unwrap_or(""));
                cols[1].str(Some(&name));
                cols[2].int(int(&u.age));
                cols[3].ts(ts(&u.date_joined));
            }
        }
        // Lineage, as the consumer writes it.
        let shard = record.event_id.as_deref().and_then(|id| id.split_once(':')).map_or("", |(s, _)| s);
        let stream = record.event_source_arn.as_deref().and_then(|a| a.rsplit_once(":stream/")).map_or("", |(_, s)| s);
        let source = format!("kinesis:{stream}/{shard}");
        cols[width - 4].str(Some(&source));
        cols[width - 3].str(Some(&record.kinesis.sequence_number));
        cols[width - 2].ts(Some(0));
        // `_rescued`: the floor keeps no fields aside.
        cols[width - 1].str(None);
    }
    let columns: Vec<ArrayRef> = cols.into_iter().map(Col::finish).collect();
    // Nullability aside (the floor does not enforce the key), the schema is the table's.
    let relaxed = Arc::new(deltalake::arrow::datatypes::Schema::new(
        schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>(),
    ));
    Ok(RecordBatch::try_new(relaxed, columns)?)
}

/// One batch through the floor, timed from the event's bytes to the closed Parquet file.
pub struct FloorBatch {
    pub ms: f64,
    pub records: usize,
    pub rows: usize,
}

/// Puts the event `bytes` through the floor into the Parquet file `file`.
pub fn write_one(table: Table, bytes: &[u8], file: &std::path::Path) -> Result<FloorBatch, Error> {
    let started = Instant::now();
    let event: KinesisEvent = serde_json::from_slice(bytes)?;
    let batch = batch(table, &event)?;
    // The file laid out as the consumer lays out its own (`pinpipe::lake::file_layout`).
    let properties = writer_properties(&batch.schema());
    let mut writer = ArrowWriter::try_new(std::fs::File::create(file)?, batch.schema(), Some(properties))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(FloorBatch { ms: started.elapsed().as_secs_f64() * 1e3, records: event.records.len(), rows: batch.num_rows() })
}

/// `floor --table pin --out DIR --label L --event F ...`: one Parquet file per event.
pub fn run(args: &Args) -> Result<(), Error> {
    let table: Table = args.req("table")?.parse()?;
    let out = std::path::PathBuf::from(args.req("out")?);
    std::fs::create_dir_all(&out)?;
    let files = args.all("event");
    let mut ms = Vec::new();
    let (mut records, mut rows, mut payload) = (0, 0, 0);
    for (k, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file)?;
        let one = write_one(table, &bytes, &out.join(format!("part-{k}.parquet")))?;
        ms.push(one.ms);
        (records, rows, payload) = (one.records, one.rows, bytes.len());
    }
    let warm = if ms.len() > 1 { median(&ms[1..]) } else { ms[0] };
    println!(
        "{}",
        json!({"kind": "floor", "label": args.get("label").unwrap_or(""), "table": table.name(),
            "records": records, "rows": rows, "payload_bytes": payload, "batches": ms.len(), "ms": ms,
            "cold_ms": ms[0], "warm_ms": warm, "peak_rss": peak_rss()})
    );
    Ok(())
}
