//! Backtests: a period of history replayed through the live jobs' operators under alternative strategies, and
//! their outcomes compared. The crate sits beside the runtime (`adstream-processors`): it builds each job with the
//! job's own definition (settings type and constructor from the job registry) and runs it with
//! `runtime::simulate`; it reads history with `adstream-query`'s offset-range source.
//!
//! - `strategy` — the strategy file: each job's settings type as a section, plus the pause rules.
//! - `engine`   — reading the history and running each strategy through `runtime::simulate` (see its doc for the
//!   warm-up and the pause feedback).
//! - `journeys` — the journeys of the history, the Markov and Shapley models fitted on them (data-driven credit
//!   models for strategies) and the Markov counterfactual of pauses, reported beside the naive one.
//! - `report`   — the side-by-side table, Parquet files, the HTML report and outcome records.

pub mod engine;
pub mod journeys;
pub mod report;
pub mod strategy;

pub use engine::{run_all, run_strategy, Action, Dataflow, History, Outcome, Period, StrategyRun};
pub use strategy::Strategy;

/// Why a backtest could not run or write its results.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// A strategy file is unreadable or invalid.
    #[error("strategy {file}: {message}")]
    Strategy {
        /// The file.
        file: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// Reading history failed.
    #[error(transparent)]
    Query(#[from] adstream_query::QueryError),
    /// A schema the backtest decodes with does not parse.
    #[error("schema: {0}")]
    Schema(#[from] adstream_processors::runtime::CodecError),
    /// A job could not be built from the strategy.
    #[error("job: {0}")]
    Settings(#[from] adstream_processors::runtime::JobError),
    /// A job's inputs or outputs do not fit the backtest.
    #[error("job: {0}")]
    Job(String),
    /// A data-driven model could not be fitted on the history's journeys.
    #[error("attribution model: {0}")]
    Model(#[from] adstream_processors::attribution::models::ModelError),
    /// A simulation failed.
    #[error(transparent)]
    Simulate(#[from] adstream_processors::runtime::SimulateError),
    /// Writing results failed.
    #[error("writing {path}: {message}")]
    Write {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}
