//! One module per subcommand group; each turns parsed arguments into library calls and prints results.

pub mod api;
pub mod attribution;
pub mod backtest;
pub mod connect;
pub mod dlq;
pub mod fatigue;
pub mod inspect;
pub mod jobs;
pub mod process;
pub mod produce;
pub mod query;
pub mod replay;
pub mod report;
pub mod schemas;
pub mod sql;
pub mod state;
pub mod topology;
