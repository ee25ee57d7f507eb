//! SQL over Kafka topics with DataFusion.
//!
//! [`server`] serves a DataFusion session over the PostgreSQL wire protocol (`adstream query serve`).

pub mod server;
