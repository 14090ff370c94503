//! Byte-level helpers for scanning JSON text without parsing it.

/// Feeds `b`, a byte inside a JSON string, to the string's escape state; true if `b` is the
/// quote that closes the string.
pub(crate) fn closes_string(b: u8, escaped: &mut bool) -> bool {
    if *escaped {
        *escaped = false;
    } else if b == b'\\' {
        *escaped = true;
    } else if b == b'"' {
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::closes_string;

    /// The byte offsets at which strings close in `text`, which starts inside a string.
    fn closings(text: &[u8]) -> Vec<usize> {
        let mut escaped = false;
        text.iter().enumerate().filter(|(_, b)| closes_string(**b, &mut escaped)).map(|(i, _)| i).collect()
    }

    #[test]
    fn escaped_quotes_and_backslashes_do_not_close_a_string() {
        assert_eq!(closings(br#"abc""#), [3]);
        assert_eq!(closings(br#"a\"b""#), [4]);
        assert_eq!(closings(br#"a\\""#), [3]);
        assert_eq!(closings(br#"a\\\"""#), [5]);
        assert_eq!(closings(br#"\u0022""#), [6]);
    }
}
