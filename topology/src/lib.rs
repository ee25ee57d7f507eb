//! The adstream topology file: which topics exist, how they are configured and keyed, and which processors read
//! and write them.
//!
//! The file (`topology/adstream.yaml`, documented in its header) is the source of truth for the cluster's topics.
//! This crate:
//! - loads and validates it ([`Topology::load`], [`Topology::parse`]); every problem is reported with
//!   `file:line:column`, all of them at once ([`TopologyError::Invalid`]);
//! - compares it with a cluster and lists what would change ([`plan`] → [`Plan`]), refusing what Kafka cannot do
//!   (fewer partitions, another replication factor);
//! - applies a plan idempotently ([`apply`]);
//! - prints it as tables ([`Topology::describe`]).

mod cluster;
mod model;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use cluster::{apply, plan, Action, ApplyReport, ConfigChange, Plan};
pub use model::{CleanupPolicy, Compaction, InternalTopics, Location, Processor, Topic, Topology};

/// One problem found in a topology file, or between the file and a cluster, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The file (or other origin) the topology was read from.
    pub origin: String,
    /// Where in it the problem is.
    pub location: Location,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.origin, self.location, self.message)
    }
}

/// Why loading, planning or applying a topology failed.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The topology file could not be read.
    #[error("cannot read topology file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid: every problem found, in file order, printed one per line.
    #[error("{}", DisplayLines(.0))]
    Invalid(Vec<ValidationError>),
    /// The cluster differs from the file in ways Kafka cannot change in place (fewer partitions, another
    /// replication factor), one per line.
    #[error("{}", DisplayLines(.0))]
    Conflicts(Vec<ValidationError>),
    /// No broker answered within the timeout.
    #[error("cannot reach Kafka at {bootstrap}: no answer to the {operation} request within {}s", timeout.as_secs_f32())]
    Unreachable {
        /// The client's `bootstrap.servers`.
        bootstrap: String,
        /// Which request went unanswered.
        operation: &'static str,
        /// How long it waited.
        timeout: Duration,
    },
    /// A request reached Kafka but failed as a whole.
    #[error("Kafka at {bootstrap}: {operation} failed: {source}")]
    Kafka {
        /// The client's `bootstrap.servers`.
        bootstrap: String,
        /// Which request failed.
        operation: String,
        /// The client's error (boxed: it is large, and errors travel in every `Result` of this crate).
        source: Box<rdkafka::error::KafkaError>,
    },
    /// Kafka refused some of the operations of a plan; the others were applied. One line per failure.
    #[error("{} of {attempted} changes failed:\n{}", failures.len(), failures.join("\n"))]
    Apply {
        /// How many operations were sent.
        attempted: usize,
        /// One line per refused operation: what, on which topic, and Kafka's reason.
        failures: Vec<String>,
    },
}

/// Formats a list of errors one per line (thiserror's format string needs a `Display` value).
struct DisplayLines<'a>(&'a [ValidationError]);

impl fmt::Display for DisplayLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}
