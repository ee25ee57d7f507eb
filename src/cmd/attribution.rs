//! `adstream attribution models`: credit a path dataset under every attribution model.
//!
//! Input is ChannelAttribution's path-data CSV: a header, then one row per distinct path with columns `path`,
//! `total_conversions`, and optionally `total_conversion_value` and `total_null` (0 when absent); other columns
//! are ignored, and fields may be double-quoted. Output is one JSON object on stdout:
//!
//! ```text
//! { "conversion_probability": p,
//!   "removal_effects": {channel: re}, "value_removal_effects": {channel: re},
//!   "models": { "last-touch": {channel: {"conversions": x, "value": y}}, ..., "shapley": {...}, "markov": {...} } }
//! ```
//!
//! The maths lives in `adstream_processors::attribution::models`; this file only reads, checks and prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use adstream_processors::attribution::models::{
    self, ChannelCredits, PathCount, RuleModel, RuleSettings,
};
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

const MILLIS_PER_HOUR: f64 = 3_600_000.0;

/// Output format of `attribution models`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One pretty-printed JSON object.
    Json,
}

/// Arguments of `adstream attribution models`.
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// CSV path dataset with a header: `path,total_conversions[,total_conversion_value][,total_null]`
    /// (ChannelAttribution's path-data format).
    #[arg(long, value_name = "FILE")]
    pub paths: PathBuf,
    /// Separator between the channels of a path; channels are trimmed, empty ones dropped.
    #[arg(long, default_value = " > ")]
    pub separator: String,
    /// Half-life of the time-decay model, in hours; a path's touches are one hour apart, the last at the
    /// conversion.
    #[arg(long, default_value_t = 168.0)]
    pub half_life_hours: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// Credit of one channel under one model.
#[derive(Serialize)]
struct Credit {
    conversions: f64,
    value: f64,
}

/// What `attribution models` prints.
#[derive(Serialize)]
struct Report {
    conversion_probability: f64,
    removal_effects: BTreeMap<String, f64>,
    value_removal_effects: BTreeMap<String, f64>,
    models: BTreeMap<&'static str, BTreeMap<String, Credit>>,
}

/// `adstream attribution models`: reads the dataset, runs every model and prints the report.
pub fn models(args: ModelsArgs) -> Result<()> {
    if !(args.half_life_hours.is_finite() && args.half_life_hours > 0.0) {
        bail!(
            "--half-life-hours must be a positive number of hours, got {}",
            args.half_life_hours
        );
    }
    let settings = RuleSettings {
        // `as` saturates, so an absurdly long half-life stays a valid (huge) one.
        half_life_ms: (args.half_life_hours * MILLIS_PER_HOUR).round() as i64,
        ..RuleSettings::default()
    };
    settings
        .validate()
        .context("--half-life-hours is below one millisecond")?;
    let text = std::fs::read_to_string(&args.paths)
        .with_context(|| format!("cannot read {}", args.paths.display()))?;
    let paths = parse_dataset(&text, &args.separator, &args.paths)?;
    models::validate_paths(&paths).with_context(|| format!("{}", args.paths.display()))?;
    let markov = models::markov(&paths)
        .with_context(|| format!("Markov model of {}", args.paths.display()))?;

    let mut credits = BTreeMap::new();
    for model in RuleModel::ALL {
        credits.insert(
            model.name(),
            as_json(models::rule_credits_over_paths(model, &paths, &settings)),
        );
    }
    credits.insert("shapley", as_json(models::shapley(&paths)));
    credits.insert("markov", as_json(markov.credits));
    let report = Report {
        conversion_probability: markov.conversion_probability,
        removal_effects: markov.removal_effects,
        value_removal_effects: markov.value_removal_effects,
        models: credits,
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

fn as_json(credits: ChannelCredits) -> BTreeMap<String, Credit> {
    credits
        .into_iter()
        .map(|(channel, (conversions, value))| (channel, Credit { conversions, value }))
        .collect()
}

/// The rows of a path-data CSV. Errors name `origin:line`.
fn parse_dataset(text: &str, separator: &str, origin: &Path) -> Result<Vec<PathCount>> {
    let origin = origin.display();
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim().is_empty());
    let (header_line, header) = lines.next().ok_or_else(|| {
        anyhow!("{origin}: empty file, expected a header `path,total_conversions,...`")
    })?;
    let header =
        split_fields(header).map_err(|e| anyhow!("{origin}:{header_line}: header: {e}"))?;
    let column = |name: &str| header.iter().position(|field| field.trim() == name);
    let required = |name: &str| {
        column(name).ok_or_else(|| {
            anyhow!("{origin}:{header_line}: the header has no `{name}` column (got {header:?})")
        })
    };
    let path_column = required("path")?;
    let conversions_column = required("total_conversions")?;
    let value_column = column("total_conversion_value");
    let null_column = column("total_null");

    let mut paths = Vec::new();
    for (line_number, line) in lines {
        let at = || format!("{origin}:{line_number}");
        let fields = split_fields(line).map_err(|e| anyhow!("{}: {e}", at()))?;
        if fields.len() != header.len() {
            bail!(
                "{}: expected {} fields like the header, got {}",
                at(),
                header.len(),
                fields.len()
            );
        }
        let number = |column: Option<usize>, name: &str| -> Result<f64> {
            let Some(column) = column else {
                return Ok(0.0);
            };
            let field = fields[column].trim();
            match field.parse::<f64>() {
                Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
                _ => bail!("{}: {name} must be a number >= 0, got {field:?}", at()),
            }
        };
        let channels = models::parse_path(&fields[path_column], separator);
        if channels.is_empty() {
            bail!("{}: the path has no channel", at());
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
fn split_fields(line: &str) -> Result<Vec<String>, String> {
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
        return Err("unterminated quoted field".to_owned());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<PathCount>> {
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
