//! Avro schema compatibility (owned by the compat work).
