//! Helpers for reading JSON without building a tree: scanning its bytes, borrowing its strings.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A JSON string, borrowed from the input when it has no escapes. Also a field of a derived
/// struct that borrows (`#[serde(borrow)] Option<Text<'a>>`, where a bare `Cow<str>` inside an
/// `Option` would always be owned).
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// Visitor methods that answer `$out::Other(kind)` for a JSON scalar: for visitors that want an
/// object or an array and name whatever else they met. (serde_json yields only finite floats.)
macro_rules! visit_other_kinds {
    ($out:ident) => {
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($out::Other("null"))
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($out::Other("a boolean"))
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($out::Other("a number"))
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($out::Other("a number"))
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($out::Other("a number"))
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($out::Other("a string"))
        }
    };
}
pub(crate) use visit_other_kinds;

/// Feeds `b`, a byte inside a JSON string, to the string's escape state; true if `b` is the
/// quote that closes the string. Batch files' line reader (`lake` only) uses it, and the tests.
#[cfg(any(feature = "lake", test))]
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
