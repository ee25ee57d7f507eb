//! Path datasets as text: ChannelAttribution's path-data CSV, read into the [`PathCount`]s the models take.
//!
//! A header, then one row per distinct path with columns `path`, `total_conversions`, and optionally
//! `total_conversion_value` and `total_null` (0 when absent); other columns are ignored, blank lines skipped, and
//! fields may be double-quoted. Errors name `origin:line`.

use std::path::Path;

use super::models::{parse_path, PathCount};

/// Why a path dataset cannot be read; each names the file and, but for an empty file, the line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DatasetError {
    /// The file has no header (nothing but blank lines).
    #[error("{origin}: empty file, expected a header `path,total_conversions,...`")]
    Empty {
        /// The file.
        origin: String,
    },
    /// The header line does not split into fields.
    #[error("{origin}:{line}: header: {problem}")]
    Header {
        /// The file.
        origin: String,
        /// The header's line number (from 1).
        line: usize,
        /// What is wrong with it.
        problem: RowProblem,
    },
    /// A required column is not in the header.
    #[error("{origin}:{line}: the header has no `{column}` column (got {header:?})")]
    MissingColumn {
        /// The file.
        origin: String,
        /// The header's line number (from 1).
        line: usize,
        /// The missing column.
        column: &'static str,
        /// The header's fields.
        header: Vec<String>,
    },
    /// A row cannot be read.
    #[error("{origin}:{line}: {problem}")]
    Row {
        /// The file.
        origin: String,
        /// The row's line number (from 1).
        line: usize,
        /// What is wrong with it.
        problem: RowProblem,
    },
}

/// What is wrong with one line of a path dataset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowProblem {
    /// A quoted field does not end on its line.
    #[error("unterminated quoted field")]
    UnterminatedQuote,
    /// The row has another number of fields than the header.
    #[error("expected {expected} fields like the header, got {got}")]
    FieldCount {
        /// The header's field count.
        expected: usize,
        /// The row's.
        got: usize,
    },
    /// A count or value is not a finite number at least 0.
    #[error("{column} must be a number >= 0, got {field:?}")]
    NotANonNegativeNumber {
        /// The column.
        column: &'static str,
        /// The field as written (trimmed).
        field: String,
    },
    /// The path names no channel.
    #[error("the path has no channel")]
    NoChannel,
}

/// The rows of a path-data CSV read from `origin` (named in errors), channels split on `separator`.
pub fn parse_dataset(
    text: &str,
    separator: &str,
    origin: &Path,
) -> Result<Vec<PathCount>, DatasetError> {
    let origin = origin.display().to_string();
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim().is_empty());
    let (header_line, header) = lines.next().ok_or_else(|| DatasetError::Empty {
        origin: origin.clone(),
    })?;
    let header = split_fields(header).map_err(|problem| DatasetError::Header {
        origin: origin.clone(),
        line: header_line,
        problem,
    })?;
    let column = |name: &str| header.iter().position(|field| field.trim() == name);
    let required = |name: &'static str| {
        column(name).ok_or_else(|| DatasetError::MissingColumn {
            origin: origin.clone(),
            line: header_line,
            column: name,
            header: header.clone(),
        })
    };
    let path_column = required("path")?;
    let conversions_column = required("total_conversions")?;
    let value_column = column("total_conversion_value");
    let null_column = column("total_null");

    let mut paths = Vec::new();
    for (line_number, line) in lines {
        let at = |problem| DatasetError::Row {
            origin: origin.clone(),
            line: line_number,
            problem,
        };
        let fields = split_fields(line).map_err(at)?;
        if fields.len() != header.len() {
            return Err(at(RowProblem::FieldCount {
                expected: header.len(),
                got: fields.len(),
            }));
        }
        let number = |column: Option<usize>, name: &'static str| -> Result<f64, DatasetError> {
            let Some(column) = column else {
                return Ok(0.0);
            };
            let field = fields[column].trim();
            match field.parse::<f64>() {
                Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
                _ => Err(at(RowProblem::NotANonNegativeNumber {
                    column: name,
                    field: field.to_owned(),
                })),
            }
        };
        let channels = parse_path(&fields[path_column], separator);
        if channels.is_empty() {
            return Err(at(RowProblem::NoChannel));
        }
        paths.push(PathCount {
            channels,
            conversions: number(Some(conversions_column), "total_conversions")?,
            value: number(value_column, "total_conversion_value")?,
            nulls: number(null_column, "total_null")?,
        });
    }
    Ok(paths)
}

/// The comma-separated fields of one CSV line. A field may be wrapped in double quotes (then it may hold commas,
/// and `""` stands for one quote); quoted fields spanning lines are not supported.
fn split_fields(line: &str) -> Result<Vec<String>, RowProblem> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, _) => field.push(c),
            (false, '"') if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, _) => field.push(c),
        }
    }
    if quoted {
        return Err(RowProblem::UnterminatedQuote);
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<PathCount>, DatasetError> {
        parse_dataset(text, " > ", Path::new("data.csv"))
    }

    #[test]
    fn reads_path_data_with_optional_columns() {
        let full = parse(
            "path,total_conversions,total_conversion_value,total_null\n\
             a > b,2,3.5,4\r\n\n\"c, d > e\",0,0,1\n",
        )
        .unwrap();
        assert_eq!(full.len(), 2);
        assert_eq!(full[0].channels, ["a", "b"]);
        assert_eq!(
            (full[0].conversions, full[0].value, full[0].nulls),
            (2.0, 3.5, 4.0)
        );
        assert_eq!(full[1].channels, ["c, d", "e"]);

        let short = parse("total_conversions,path\n1,x > x\n").unwrap();
        assert_eq!(short[0].channels, ["x", "x"]);
        assert_eq!((short[0].value, short[0].nulls), (0.0, 0.0));
    }

    #[test]
    fn malformed_rows_are_reported_with_file_and_line() {
        let error = |text: &str| format!("{:#}", parse(text).unwrap_err());
        assert_eq!(
            error("path,total_conversions\na,1\nb,-1\n"),
            "data.csv:3: total_conversions must be a number >= 0, got \"-1\""
        );
        assert_eq!(
            error("path,total_conversions\na,1,2\n"),
            "data.csv:2: expected 2 fields like the header, got 3"
        );
        assert_eq!(
            error("path,total_conversions\n > ,1\n"),
            "data.csv:2: the path has no channel"
        );
        assert_eq!(
            error("path,total_conversions,total_null\na,1,NaN\n"),
            "data.csv:2: total_null must be a number >= 0, got \"NaN\""
        );
        assert_eq!(
            error("path,total_conversions\n\"a,1\n"),
            "data.csv:2: unterminated quoted field"
        );
        assert!(error("route,total_conversions\n")
            .starts_with("data.csv:1: the header has no `path` column"));
        assert_eq!(
            error("\n\n"),
            "data.csv: empty file, expected a header `path,total_conversions,...`"
        );
    }

    #[test]
    fn splits_quoted_fields() {
        assert_eq!(
            split_fields("a,\"b,\"\"c\"\"\",").unwrap(),
            ["a", "b,\"c\"", ""]
        );
        assert_eq!(split_fields("").unwrap(), [""]);
    }
}
