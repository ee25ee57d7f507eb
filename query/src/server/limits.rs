//! Size, depth and parse-work limits checked on the SQL text before the server parses it.
//!
//! Parsing, printing, checking and planning a statement all recurse over its syntax tree, so a tree deep enough
//! overflows a thread's stack, which aborts the whole process rather than failing the one query. A flat-looking text
//! can make a deep tree: `1+1+...+1` and `SELECT 1 UNION ALL SELECT 1 ...` are left-deep chains as deep as they are
//! long. So before any parser sees the text, a cheap scan bounds how deep its tree can be: the deepest nesting of
//! parentheses plus every operator, set operation and join, each of which can add at most one level. Clients'
//! queries, psql's and BI tools' catalog queries included, stay far below the default bound. Last, a trial parse
//! under a step budget ([`super::parse_budget`]) refuses texts whose parse would backtrack for seconds.

use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};

use super::parse_budget::{self, ParseTooComplex};

/// Postgres' SQLSTATE for a statement over an implementation limit (here: the text size).
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
/// Postgres' SQLSTATE for a statement too deeply nested to run.
pub const STATEMENT_TOO_COMPLEX: &str = "54001";

/// The bounds on one query text.
#[derive(Debug, Clone, Copy)]
pub struct TextLimits {
    /// Longest accepted text, in bytes.
    pub max_bytes: usize,
    /// Bound on the depth the text's syntax tree can reach (see the module documentation).
    pub max_depth: usize,
}

/// Why a text was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextRefusal {
    /// The text is longer than allowed.
    #[error("the query is {bytes} bytes long, more than the {max_bytes} this server accepts")]
    TooLong {
        /// The text's length.
        bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// The text nests or chains too deeply.
    #[error(
        "the query is too complex: its nesting and chained operators reach a depth of at least {depth}, more than \
         the {max_depth} this server accepts"
    )]
    TooDeep {
        /// How deep the text's tree can reach, counted up to one past the limit.
        depth: usize,
        /// The limit.
        max_depth: usize,
    },
    /// Parsing the text takes more steps than its budget allows.
    #[error(transparent)]
    TooComplexToParse(#[from] ParseTooComplex),
}

impl TextRefusal {
    /// The error sent to the client.
    pub fn into_pg_error(self) -> PgWireError {
        let code = match self {
            TextRefusal::TooLong { .. } => PROGRAM_LIMIT_EXCEEDED,
            TextRefusal::TooDeep { .. } | TextRefusal::TooComplexToParse(_) => {
                STATEMENT_TOO_COMPLEX
            }
        };
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_string(),
            code.to_string(),
            self.to_string(),
        )))
    }
}

impl TextLimits {
    /// `Ok` when `sql` is short and shallow enough to be parsed safely, and its parse stays within the step budget.
    pub fn check(&self, sql: &str) -> Result<(), TextRefusal> {
        if sql.len() > self.max_bytes {
            return Err(TextRefusal::TooLong {
                bytes: sql.len(),
                max_bytes: self.max_bytes,
            });
        }
        let depth = depth_bound(sql, self.max_depth);
        if depth > self.max_depth {
            return Err(TextRefusal::TooDeep {
                depth,
                max_depth: self.max_depth,
            });
        }
        parse_budget::check(sql)?;
        Ok(())
    }
}

/// Keywords that chain two operands into one node of the tree.
const CHAINING_KEYWORDS: [&str; 6] = ["UNION", "INTERSECT", "EXCEPT", "JOIN", "AND", "OR"];

/// An upper bound on the depth of `sql`'s syntax tree: the deepest parenthesis nesting plus the count of operator
/// characters and chaining keywords outside literals, quoted names and comments. Counting stops once past `stop`.
fn depth_bound(sql: &str, stop: usize) -> usize {
    let bytes = sql.as_bytes();
    let mut nesting = 0usize;
    let mut deepest = 0usize;
    let mut chained = 0usize;
    let mut i = 0;
    while i < bytes.len() && deepest + chained <= stop {
        match bytes[i] {
            b'\'' => i = skip_quoted(bytes, i, b'\''),
            b'"' => i = skip_quoted(bytes, i, b'"'),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |end| i + end + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'$' => i = skip_dollar_quoted(bytes, i),
            b'(' | b'[' => {
                nesting += 1;
                deepest = deepest.max(nesting);
                i += 1;
            }
            b')' | b']' => {
                nesting = nesting.saturating_sub(1);
                i += 1;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'|' | b'&' | b'<' | b'>' | b'=' | b'!'
            | b'~' | b'#' | b'@' | b':' => {
                // A run of operator characters (`<=`, `||`, `::`, `!~*`) is one operator.
                while i < bytes.len() && is_operator_char(bytes[i]) {
                    i += 1;
                }
                chained += 1;
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &sql[start..i];
                if CHAINING_KEYWORDS
                    .iter()
                    .any(|keyword| keyword.eq_ignore_ascii_case(word))
                {
                    chained += 1;
                }
            }
            _ => i += 1,
        }
    }
    deepest + chained
}

fn is_operator_char(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'%'
            | b'^'
            | b'|'
            | b'&'
            | b'<'
            | b'>'
            | b'='
            | b'!'
            | b'~'
            | b'#'
            | b'@'
            | b':'
    )
}

/// The index after the literal or name opened by `quote` at `start` (a doubled quote is an escaped one, which the
/// scan reads as a closing and a reopening quote alike); the end of the text if it is never closed.
fn skip_quoted(bytes: &[u8], start: usize, quote: u8) -> usize {
    bytes[start + 1..]
        .iter()
        .position(|&b| b == quote)
        .map_or(bytes.len(), |end| start + 1 + end + 1)
}

/// The index after the `/* ... */` comment at `start`; Postgres nests these.
fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The index after the `$tag$ ... $tag$` string at `start`, or after the `$` when it opens no such string (a
/// parameter `$1`).
fn skip_dollar_quoted(bytes: &[u8], start: usize) -> usize {
    let tag_len = bytes[start + 1..]
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'));
    let Some(tag_len) = tag_len else {
        return bytes.len();
    };
    let tag_end = start + 1 + tag_len;
    if bytes[tag_end] != b'$'
        || bytes[start + 1..tag_end]
            .first()
            .is_some_and(u8::is_ascii_digit)
    {
        return start + 1;
    }
    let tag = &bytes[start..=tag_end];
    let body = tag_end + 1;
    bytes[body..]
        .windows(tag.len())
        .position(|window| window == tag)
        .map_or(bytes.len(), |end| body + end + tag.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TextLimits = TextLimits {
        max_bytes: 1 << 20,
        max_depth: 1000,
    };

    fn repeated(term: &str, separator: &str, count: usize) -> String {
        vec![term; count].join(separator)
    }

    #[test]
    fn ordinary_queries_pass() {
        assert_eq!(LIMITS.check("SELECT 1"), Ok(()));
        assert_eq!(
            LIMITS.check(
                "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n \
                 ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','') AND n.nspname !~ '^pg_toast' ORDER BY 1,2"
            ),
            Ok(())
        );
        // Operators inside literals, quoted names and comments chain nothing.
        let quoted = format!(
            "SELECT '{}' AS \"{}\" -- {}\n/* {} /* nested */ */ , $x${}$x$",
            "+".repeat(5000),
            "-".repeat(5000),
            "*".repeat(5000),
            "(".repeat(5000),
            "|".repeat(5000)
        );
        assert_eq!(LIMITS.check(&quoted), Ok(()));
        assert_eq!(LIMITS.check("SELECT $1 + $2 FROM t WHERE a = $3"), Ok(()));
    }

    #[test]
    fn long_chains_are_refused_before_parsing() {
        let unions = repeated("SELECT 1 AS a", " UNION ALL ", 20_000);
        assert!(matches!(
            LIMITS.check(&unions),
            Err(TextRefusal::TooDeep { .. })
        ));
        let sum = format!("SELECT {}", repeated("1", "+", 150_000));
        assert!(matches!(
            LIMITS.check(&sum),
            Err(TextRefusal::TooDeep { .. })
        ));
        let joins = format!("SELECT 1 FROM t{}", " JOIN t USING (a)".repeat(2000));
        assert!(matches!(
            LIMITS.check(&joins),
            Err(TextRefusal::TooDeep { .. })
        ));
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let nested = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(matches!(
            LIMITS.check(&nested),
            Err(TextRefusal::TooDeep { .. })
        ));
        let unclosed = format!("SELECT {}", "(".repeat(5000));
        assert!(matches!(
            LIMITS.check(&unclosed),
            Err(TextRefusal::TooDeep { .. })
        ));
    }

    #[test]
    fn long_texts_are_refused() {
        let long = format!("SELECT '{}'", "x".repeat(2 << 20));
        assert!(matches!(
            LIMITS.check(&long),
            Err(TextRefusal::TooLong { .. })
        ));
    }

    #[test]
    fn unterminated_quotes_and_comments_end_the_scan() {
        assert_eq!(LIMITS.check("SELECT 'abc"), Ok(()));
        assert_eq!(LIMITS.check("SELECT 1 /* open"), Ok(()));
        assert_eq!(LIMITS.check("SELECT $tag$ open"), Ok(()));
        assert_eq!(LIMITS.check("SELECT $"), Ok(()));
    }
}
