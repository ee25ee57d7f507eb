//! Fit points as text: `exposure,impressions,clicks` rows after a header naming those columns (in any order), as
//! `adstream fatigue fit` reads them for [`super::detector::fit_poisson_decay`].

use std::num::{ParseFloatError, ParseIntError};

use super::detector::FitPoint;

/// Why a points file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointsError {
    /// The file has no header (nothing but blank lines).
    #[error("empty file: expected a header `exposure,impressions,clicks`")]
    Empty,
    /// A column is not in the header.
    #[error("the header `{header}` has no column `{column}`")]
    MissingColumn {
        /// The header line.
        header: String,
        /// The missing column.
        column: &'static str,
    },
    /// A row is shorter than the header says.
    #[error("line {line}: missing column `{column}`")]
    MissingField {
        /// The row's line number (from 1).
        line: usize,
        /// The column.
        column: &'static str,
    },
    /// An exposure is not a number.
    #[error("line {line}: exposure is not a number")]
    Exposure {
        /// The row's line number (from 1).
        line: usize,
        /// Why.
        #[source]
        source: ParseFloatError,
    },
    /// An impression or click count is not a whole number.
    #[error("line {line}: {column} is not a whole number")]
    Count {
        /// The row's line number (from 1).
        line: usize,
        /// `impressions` or `clicks`.
        column: &'static str,
        /// Why.
        #[source]
        source: ParseIntError,
    },
}

/// Parses `exposure,impressions,clicks` rows after a header naming those columns (in any order); blank lines are
/// skipped.
pub fn parse_points(text: &str) -> Result<Vec<FitPoint>, PointsError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(PointsError::Empty);
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let position = |name: &'static str| {
        columns
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| PointsError::MissingColumn {
                header: header.to_owned(),
                column: name,
            })
    };
    let (exposure, impressions, clicks) = (
        position("exposure")?,
        position("impressions")?,
        position("clicks")?,
    );
    lines
        .map(|(index, line)| {
            let line_number = index + 1;
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let field = |column: usize, name: &'static str| {
                fields
                    .get(column)
                    .copied()
                    .ok_or(PointsError::MissingField {
                        line: line_number,
                        column: name,
                    })
            };
            let count = |column: usize, name: &'static str| {
                field(column, name)?
                    .parse()
                    .map_err(|source| PointsError::Count {
                        line: line_number,
                        column: name,
                        source,
                    })
            };
            Ok(FitPoint {
                exposure: field(exposure, "exposure")?.parse().map_err(|source| {
                    PointsError::Exposure {
                        line: line_number,
                        source,
                    }
                })?,
                impressions: count(impressions, "impressions")?,
                clicks: count(clicks, "clicks")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_in_any_order_and_errors_name_the_line() {
        let points = parse_points("clicks, exposure,impressions\n\n3,1.5,100\n").unwrap();
        assert_eq!(
            points,
            [FitPoint {
                exposure: 1.5,
                impressions: 100,
                clicks: 3
            }]
        );
        assert_eq!(parse_points("\n"), Err(PointsError::Empty));
        assert_eq!(
            parse_points("exposure,impressions,clicks\n1,2\n")
                .unwrap_err()
                .to_string(),
            "line 2: missing column `clicks`"
        );
        assert_eq!(
            parse_points("exposure,impressions,clicks\n1,2.5,1\n")
                .unwrap_err()
                .to_string(),
            "line 2: impressions is not a whole number"
        );
        assert!(parse_points("exposure,clicks\n")
            .unwrap_err()
            .to_string()
            .contains("has no column `impressions`"));
    }
}
