//! Confluent-compatible schema registry server.
