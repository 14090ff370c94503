//! SQL `LIKE` patterns, for `--reason-like`: the filter an operator already writes in
//! `pinpipe query`, without a query engine in the Lambda.

/// A `LIKE` pattern: `%` matches any run of characters (none included), `_` exactly one, `\`
/// makes the next character literal (`\%`, `\_`, `\\`), DataFusion's default escape. Case
/// matters, as in SQL. The whole text must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Like {
    pattern: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    One,
    Any,
}

impl Like {
    pub fn new(pattern: &str) -> Self {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '%' if tokens.last() == Some(&Token::Any) => continue,
                '%' => Token::Any,
                '_' => Token::One,
                // A trailing `\` is itself, as DataFusion reads it.
                '\\' => Token::Literal(chars.next().unwrap_or('\\')),
                c => Token::Literal(c),
            });
        }
        Self { pattern: pattern.to_string(), tokens }
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches. Linear backtracking to the last `%`: time O(text × pattern) at
    /// worst, never exponential.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (mut t, mut p) = (0, 0);
        // Where the last `%` was, and the text position it has been made to cover up to.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::Any) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(Token::One) => (t, p) = (t + 1, p + 1),
                Some(Token::Literal(c)) if *c == text[t] => (t, p) = (t + 1, p + 1),
                _ => match star {
                    // Let the last `%` cover one more character and try again from there.
                    Some((sp, st)) => {
                        star = Some((sp, st + 1));
                        (t, p) = (st + 1, sp + 1);
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|token| *token == Token::Any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_as_sql_does() {
        let cases: [(&str, &str, bool); 20] = [
            ("follower_count:%", r#"follower_count: cannot convert "lots" to a follower count"#, true),
            ("follower_count:%", r#"age: cannot convert "lots""#, false),
            ("%lots%", r#"follower_count: cannot convert "lots" to a follower count"#, true),
            ("%count", "follower_count", true),
            ("%count", "follower_count: x", false),
            ("age: _annot%", "age: cannot convert", true),
            ("age: _annot%", "age: annot", false),
            ("a_c", "abc", true),
            ("a_c", "ac", false),
            ("a_c", "abbc", false),
            ("%", "", true),
            ("", "", true),
            ("", "x", false),
            ("%a%b%", "xxaxxbxx", true),
            ("%a%b%", "xxbxxaxx", false),
            ("100\\%", "100%", true),
            ("100\\%", "1000", false),
            ("a\\_b", "a_b", true),
            ("a\\_b", "axb", false),
            ("Invalid%", "invalid JSON", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(Like::new(pattern).matches(text), expected, "{pattern:?} LIKE {text:?}");
        }
        assert!(Like::new("%é_").matches("caféx"), "characters, not bytes");
        // Many `%` against a long text that does not match stays fast.
        let long = "a".repeat(10_000);
        assert!(!Like::new("%a%a%a%a%b").matches(&long));
    }
}
