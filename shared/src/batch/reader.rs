//! Reading an object record by record: lines or the elements of one JSON array, gzip or not,
//! never the whole object at once.

use async_compression::tokio::bufread::GzipDecoder;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use super::ObjectBody;
use crate::json::closes_string;

/// A record of an object longer than this is quarantined with its first `KEPT_OF_OVERSIZED`
/// (64 KiB) bytes rather than held in memory: no clean `pin`, `geo` or `user` record comes near it.
///
/// Not the producer's `api::MAX_RECORD_BYTES` (1 MiB, Kinesis' limit on one record, checked
/// before a record is put): the batch path's records come from Kafka and never pass through
/// Kinesis, so that limit does not apply to them. This one only bounds the memory the reader
/// holds for one record, and a record over it still lands, cut, in quarantine.
pub const MAX_OBJECT_RECORD_BYTES: usize = 4 << 20;
const KEPT_OF_OVERSIZED: usize = 64 << 10;

/// One raw record read from an object: its bytes, and the line (or array element) it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    pub line: u64,
    pub bytes: Vec<u8>,
    /// Why the record cannot be cleaned before it is even parsed (too long, object corrupt).
    pub unreadable: Option<String>,
}

/// Marks the errors of the stream under the decoder, so that they can be told from errors in
/// the content (a corrupt gzip stream): only the former are worth a retry.
struct Transport(ObjectBody);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(std::io::Error);

impl Transport {
    fn caused(error: &std::io::Error) -> bool {
        error.get_ref().is_some_and(|inner| inner.is::<TransportError>())
    }

    fn mark(error: std::io::Error) -> std::io::Error {
        std::io::Error::new(error.kind(), TransportError(error))
    }
}

impl tokio::io::AsyncRead for Transport {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf).map_err(Transport::mark)
    }
}

impl AsyncBufRead for Transport {
    fn poll_fill_buf(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<&[u8]>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_fill_buf(cx).map_err(Transport::mark)
    }

    fn consume(mut self: std::pin::Pin<&mut Self>, amt: usize) {
        std::pin::Pin::new(&mut self.0).consume(amt)
    }
}

/// Splits an object's stream into records: one per non-blank line, or one per element if the
/// object is a single JSON array. Reads as it goes; holds one record at a time.
pub struct RecordReader {
    body: ObjectBody,
    mode: Option<Mode>,
    /// Lines read so far.
    line: u64,
    /// Array elements read so far.
    elements: u64,
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Lines,
    /// A top-level array; `true` once its `[` was read.
    Array(bool),
}

impl RecordReader {
    pub fn new(body: ObjectBody, gzip: bool) -> Self {
        let body: ObjectBody = Box::new(Transport(body));
        let body: ObjectBody = if gzip {
            let mut decoder = GzipDecoder::new(body);
            decoder.multiple_members(true);
            Box::new(BufReader::new(decoder))
        } else {
            body
        };
        Self { body, mode: None, line: 0, elements: 0, done: false }
    }

    /// The next record, `None` at the end. A stream that cannot be decoded (corrupt gzip) ends
    /// with one unreadable record that says why; errors of the transport (S3, the disk) are
    /// returned, since a retry may well succeed.
    pub async fn next_record(&mut self) -> std::io::Result<Option<ObjectRecord>> {
        if self.done {
            return Ok(None);
        }
        let result = match self.mode {
            Some(Mode::Lines) => self.next_line().await,
            Some(Mode::Array(_)) => self.next_element().await,
            None => match self.detect().await {
                Ok(Mode::Lines) => {
                    self.mode = Some(Mode::Lines);
                    self.next_line().await
                }
                Ok(mode) => {
                    self.mode = Some(mode);
                    self.next_element().await
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) if !Transport::caused(&e) => {
                self.done = true;
                let at = self.position() + 1;
                let reason = format!("object unreadable from record {at} on: {e}");
                Ok(Some(ObjectRecord { line: at, bytes: Vec::new(), unreadable: Some(reason) }))
            }
            other => other,
        }
    }

    /// Line number in line mode, element number in array mode, of the last record read.
    fn position(&self) -> u64 {
        match self.mode {
            Some(Mode::Array(_)) => self.elements,
            _ => self.line,
        }
    }

    /// An object whose first non-blank byte is `[` is one JSON array; anything else is lines.
    async fn detect(&mut self) -> std::io::Result<Mode> {
        let buf = self.body.fill_buf().await?;
        let first = buf.iter().find(|b| !b.is_ascii_whitespace());
        match first {
            Some(b'[') => Ok(Mode::Array(false)),
            Some(_) => Ok(Mode::Lines),
            // Only blanks in the first buffer: lines handles the rest, arrays there are rare.
            None => Ok(Mode::Lines),
        }
    }

    async fn next_line(&mut self) -> std::io::Result<Option<ObjectRecord>> {
        loop {
            let mut bytes = Vec::new();
            let mut length = 0usize;
            let mut ended = false;
            while !ended {
                let buf = self.body.fill_buf().await?;
                if buf.is_empty() {
                    break;
                }
                let (take, newline) = match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => (i, true),
                    None => (buf.len(), false),
                };
                let room = MAX_OBJECT_RECORD_BYTES.saturating_sub(bytes.len()).min(take);
                bytes.extend_from_slice(&buf[..room]);
                length += take;
                self.body.consume(take + usize::from(newline));
                ended = newline;
            }
            if length == 0 && !ended {
                return Ok(None);
            }
            self.line += 1;
            if length <= MAX_OBJECT_RECORD_BYTES && bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            return Ok(Some(self.record(self.line, bytes, length)));
        }
    }

    /// The next element of the top-level array. Tracks strings and nesting so that commas and
    /// brackets inside a value do not split it; a scalar element ends at the next `,` or `]`.
    async fn next_element(&mut self) -> std::io::Result<Option<ObjectRecord>> {
        let mut bytes = Vec::new();
        let mut length = 0usize;
        let mut depth = 0usize;
        let (mut in_string, mut escaped, mut started) = (false, false, false);
        loop {
            let buf = self.body.fill_buf().await?;
            if buf.is_empty() {
                // An array cut short: what was read of its last element is quarantined as is.
                if length == 0 {
                    return Ok(None);
                }
                self.elements += 1;
                return Ok(Some(self.record(self.elements, bytes, length)));
            }
            let mut used = 0;
            let mut finished = false;
            for &b in buf {
                used += 1;
                if !started {
                    match (b, self.mode) {
                        (b'[', Some(Mode::Array(false))) => {
                            self.mode = Some(Mode::Array(true));
                            continue;
                        }
                        (b']', _) => {
                            self.done = true;
                            finished = true;
                            break;
                        }
                        (b',', _) => continue,
                        _ if b.is_ascii_whitespace() => continue,
                        _ => started = true,
                    }
                }
                if in_string {
                    in_string = !closes_string(b, &mut escaped);
                } else {
                    match b {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' if depth > 0 => depth -= 1,
                        b',' | b']' if depth == 0 => {
                            // The separator ends a scalar element and is left for the next call.
                            used -= 1;
                            finished = true;
                            break;
                        }
                        _ => {}
                    }
                }
                length += 1;
                if bytes.len() < MAX_OBJECT_RECORD_BYTES {
                    bytes.push(b);
                }
                if depth == 0 && !in_string && matches!(b, b'}' | b']' | b'"') {
                    finished = true;
                    break;
                }
            }
            self.body.consume(used);
            if finished {
                if length == 0 {
                    return Ok(None);
                }
                self.elements += 1;
                return Ok(Some(self.record(self.elements, bytes, length)));
            }
        }
    }

    fn record(&self, line: u64, mut bytes: Vec<u8>, length: usize) -> ObjectRecord {
        // The reason's words are what `holds_partial_record` looks for: keep them in step.
        let unreadable = (length > MAX_OBJECT_RECORD_BYTES).then(|| {
            bytes.truncate(KEPT_OF_OVERSIZED);
            format!(
                "record of {length} bytes is over the {MAX_OBJECT_RECORD_BYTES}-byte limit; its first {KEPT_OF_OVERSIZED} bytes are kept"
            )
        });
        ObjectRecord { line, bytes, unreadable }
    }
}

/// Whether a quarantine `reason` says the row does not hold its whole record (an oversized
/// record cut to its first bytes, the unreadable rest of a corrupt object): no rule change can
/// make such a row pass, so a redrive leaves it alone (`crate::redrive`).
pub fn holds_partial_record(reason: &str) -> bool {
    reason.starts_with("object unreadable from record ")
        || (reason.starts_with("record of ") && reason.contains("-byte limit; its first"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(bytes: &'static [u8]) -> ObjectBody {
        Box::new(bytes)
    }

    async fn records(bytes: &'static [u8], gzip: bool) -> Vec<ObjectRecord> {
        let mut reader = RecordReader::new(body(bytes), gzip);
        let mut out = Vec::new();
        while let Some(record) = reader.next_record().await.expect("in-memory reads do not fail") {
            out.push(record);
        }
        out
    }

    fn texts(records: &[ObjectRecord]) -> Vec<(u64, String)> {
        records.iter().map(|r| (r.line, String::from_utf8_lossy(&r.bytes).into_owned())).collect()
    }

    #[tokio::test]
    async fn lines_are_records_and_blank_lines_are_not() {
        let got = records(b"{\"ind\":1}\n\n{\"ind\":2}\r\n  \n{\"ind\":3}", false).await;
        assert_eq!(texts(&got), vec![(1, "{\"ind\":1}".into()), (3, "{\"ind\":2}".into()), (5, "{\"ind\":3}".into())]);
        assert!(records(b"", false).await.is_empty());
        assert!(records(b"\n\n", false).await.is_empty());
    }

    #[tokio::test]
    async fn an_array_object_yields_its_elements() {
        let got = records(b" [ {\"a\":\"x,]}\\\"\"}, {\"b\":[1,{\"c\":2}]},\n 42 , \"s\", null ]\n", false).await;
        assert_eq!(
            texts(&got),
            vec![
                (1, "{\"a\":\"x,]}\\\"\"}".into()),
                (2, "{\"b\":[1,{\"c\":2}]}".into()),
                (3, "42 ".into()),
                (4, "\"s\"".into()),
                (5, "null ".into()),
            ]
        );
        assert!(records(b"[]", false).await.is_empty());
        // Cut short: the partial element is still a record (quarantined by cleaning).
        assert_eq!(
            texts(&records(b"[{\"a\":1},{\"b\"", false).await),
            vec![(1, "{\"a\":1}".into()), (2, "{\"b\"".into())]
        );
    }

    #[tokio::test]
    async fn gzip_objects_are_decompressed_and_corrupt_ones_end_in_an_unreadable_record() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(b"{\"ind\":1}\n{\"ind\":2}\n").unwrap();
        let gz: &'static [u8] = encoder.finish().unwrap().leak();
        assert_eq!(texts(&records(gz, true).await), vec![(1, "{\"ind\":1}".into()), (2, "{\"ind\":2}".into())]);

        let corrupt: &'static [u8] = b"\x1f\x8b\x08\x00garbage that is not deflate at all";
        let got = records(corrupt, true).await;
        assert_eq!(got.len(), 1);
        assert!(got[0].unreadable.as_deref().is_some_and(|r| r.contains("unreadable")), "{got:?}");
        assert!(got[0].unreadable.as_deref().is_some_and(holds_partial_record), "a redrive leaves it alone");
        assert!(!holds_partial_record("invalid JSON: EOF while parsing an object at line 1 column 9"));
    }

    #[tokio::test]
    async fn an_oversized_record_is_cut_and_marked_not_held_whole() {
        let mut big = b"{\"ind\": \"".to_vec();
        big.resize(MAX_OBJECT_RECORD_BYTES + 10, b'x');
        big.extend_from_slice(b"\"}\n{\"ind\":2}\n");
        let got = records(big.leak(), false).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].bytes.len(), KEPT_OF_OVERSIZED);
        assert!(got[0].unreadable.as_deref().is_some_and(|r| r.contains("over the")), "{:?}", got[0].unreadable);
        assert!(got[0].unreadable.as_deref().is_some_and(holds_partial_record), "a redrive leaves it alone");
        assert_eq!((got[1].line, got[1].bytes.as_slice(), &got[1].unreadable), (2, &b"{\"ind\":2}"[..], &None));
    }
}
