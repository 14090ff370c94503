//! `pinpipe clean`: the pipeline's own cleaning code over JSON lines, so a user can see what
//! the pipeline will do to their data before they deploy it.

use std::io::{self, BufRead, Write};

use pinpipe::Table;
use pinpipe::clean::clean_bytes;

/// How many lines were cleaned and rejected.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub cleaned: usize,
    pub rejected: usize,
}

/// Cleans each non-blank line of `input`: clean records to `out` (one JSON object per line, keys
/// in column order, then `_rescued` if the line has fields no rule reads, docs/records.md), rejections to `rejects` as `{"line": N, "reason": "..."}` with 1-based
/// line numbers. Fails only when reading or writing fails.
pub fn clean_lines(
    table: Table,
    mut input: impl BufRead,
    out: &mut impl Write,
    rejects: &mut impl Write,
) -> io::Result<Counts> {
    let mut counts = Counts::default();
    let mut line = Vec::with_capacity(1024);
    let mut number = 0usize;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        number += 1;
        let record = line.strip_suffix(b"\n").unwrap_or(&line);
        let record = record.strip_suffix(b"\r").unwrap_or(record);
        if record.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match clean_bytes(table, record) {
            Ok(clean) => {
                writeln!(out, "{}", clean.to_json_line(table))?;
                counts.cleaned += 1;
            }
            Err(rejection) => {
                writeln!(rejects, "{}", serde_json::json!({"line": number, "reason": rejection.0}))?;
                counts.rejected += 1;
            }
        }
    }
    out.flush()?;
    rejects.flush()?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_records_go_to_stdout_and_rejections_to_stderr_with_line_numbers() {
        let input = concat!(
            r#"{"ind": 7528, "first_name": "Abigail", "last_name": "Ali", "age": 20, "date_joined": "2015-10-24 11:23:51"}"#,
            "\n",
            "\n",
            r#"{"ind": 2, "age": "old"}"#,
            "\r\n",
            "not json\n",
            r#"{"ind": 3, "first_name": "Cy", "date_joined": "2017-02-03T04:05:06"}"#,
        );
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let counts = clean_lines(Table::User, input.as_bytes(), &mut out, &mut err).unwrap();
        assert_eq!(counts, Counts { cleaned: 2, rejected: 2 });
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"ind":7528,"user_name":"Abigail Ali","age":20,"date_joined":"2015-10-24T11:23:51"}"#,
                "\n",
                r#"{"ind":3,"user_name":"Cy","age":null,"date_joined":"2017-02-03T04:05:06"}"#,
                "\n",
            )
        );
        let rejects: Vec<serde_json::Value> =
            String::from_utf8(err).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(rejects[0], serde_json::json!({"line": 3, "reason": "age: cannot convert \"old\" to an integer"}));
        assert_eq!(rejects[1]["line"], 4);
        assert!(rejects[1]["reason"].as_str().unwrap().starts_with("invalid JSON"));
    }

    #[test]
    fn fields_no_rule_reads_are_shown_under_rescued_as_sent() {
        let input = r#"{"index": 1, "title": "t", "new_field": "important", "extra": {"a": 1}}"#;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        clean_lines(Table::Pin, input.as_bytes(), &mut out, &mut err).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.ends_with("\"downloaded\":null,\"_rescued\":{\"new_field\":\"important\",\"extra\":{\"a\": 1}}}\n"),
            "{line}"
        );
    }

    #[test]
    fn invalid_utf8_is_a_rejected_line_not_a_failure() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let counts = clean_lines(Table::Pin, &b"\xff\xfe\n"[..], &mut out, &mut err).unwrap();
        assert_eq!(counts, Counts { cleaned: 0, rejected: 1 });
        assert!(String::from_utf8(err).unwrap().contains("not UTF-8"));
    }
}
