//! Query results written out: an aligned text table, CSV with a header row, JSON lines or Parquet, to a file or
//! stdout.

use std::io::Write;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::parquet::errors::ParquetError;
use futures::StreamExt;

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
    /// Apache Parquet.
    Parquet,
}

impl OutputFormat {
    /// The format a file name asks for: `.parquet`, `.csv`, JSON lines for any other name.
    pub fn for_path(path: &Path) -> OutputFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => OutputFormat::Parquet,
            Some("csv") => OutputFormat::Csv,
            _ => OutputFormat::Json,
        }
    }
}

/// Why results could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output file could not be created.
    #[error("cannot create {}", .path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The query failed while its results were read.
    #[error("the query failed")]
    Query(#[source] DataFusionError),
    /// A batch could not be encoded as a table, CSV or JSON.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// A batch could not be encoded as Parquet.
    #[error(transparent)]
    Parquet(#[from] ParquetError),
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Writes a result stream in `format` to `out` or stdout; returns the row count.
pub async fn write_results(
    mut stream: SendableRecordBatchStream,
    format: OutputFormat,
    out: Option<&Path>,
) -> Result<usize, OutputError> {
    let schema = stream.schema();
    let sink: Box<dyn Write + Send> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|source| OutputError::Create {
                path: path.to_owned(),
                source,
            })?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut rows = 0usize;
    match format {
        OutputFormat::Table => {
            let mut batches: Vec<RecordBatch> = Vec::new();
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(OutputError::Query)?;
                rows += batch.num_rows();
                batches.push(batch);
            }
            let mut sink = sink;
            let table = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?;
            writeln!(sink, "{table}")?;
            sink.flush()?;
        }
        OutputFormat::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(sink);
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(OutputError::Query)?;
                rows += batch.num_rows();
                writer.write(&batch)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(sink);
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(OutputError::Query)?;
                rows += batch.num_rows();
                writer.write(&batch)?;
            }
            writer.finish()?;
        }
        OutputFormat::Parquet => {
            let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(sink, schema, None)?;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(OutputError::Query)?;
                rows += batch.num_rows();
                writer.write(&batch)?;
            }
            writer.close()?;
        }
    }
    Ok(rows)
}
