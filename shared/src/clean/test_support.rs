//! What the cleaning tests share: cleaning a JSON value, one cell of the result, the reason
//! of a rejection, and a sample pin record to override fields of.

use serde_json::{Value, json};

use super::{Cell, CleanRecord, Rejection, clean_bytes};
use crate::Table;

pub(super) fn clean_json(table: Table, raw: Value) -> Result<CleanRecord<'static>, Rejection> {
    clean_bytes(table, raw.to_string().as_bytes()).map(CleanRecord::into_owned)
}

pub(super) fn cell(table: Table, raw: Value, column: &str) -> Cell<'static> {
    let record = clean_json(table, raw).expect("record cleans");
    let i = table.columns().iter().position(|c| c.name == column).expect("column exists");
    record.cells[i].clone()
}

pub(super) fn pin(overrides: Value) -> Value {
    let mut base = json!({"index": 7528, "unique_id": "fbe53c66-3442-4773-b19e-d3ec6f54dddf", "title": "Room ideas",
        "description": "Nice room", "poster_name": "Jane", "follower_count": "211k",
        "tag_list": "Home Decor,Diy Decor,Room Ideas", "is_image_or_video": "image", "image_src": "https://i.pinimg.com/x.jpg",
        "downloaded": 1, "save_location": "Local save in /data/home-decor", "category": "home-decor"});
    for (k, v) in overrides.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

pub(super) fn rejection(table: Table, raw: Value) -> String {
    clean_json(table, raw).expect_err("record is rejected").0
}
