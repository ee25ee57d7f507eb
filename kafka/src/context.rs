//! Client contexts shared by adstream's Kafka clients.

use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

/// Whether `error` is librdkafka's end-of-partition event, which arrives as a consumer error and also as a
/// client-wide ("global") error.
pub fn is_end_of_partition(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::PartitionEOF(_)
            | KafkaError::MessageConsumption(RDKafkaErrorCode::PartitionEOF)
            | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    )
}

/// A client context for consumers that read to the end (`enable.partition.eof`): it does not log the
/// end-of-partition events they asked for (librdkafka's default context logs them as errors), and logs every other
/// client error as a warning.
pub struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_end_of_partition(&error) {
            tracing::warn!(%error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for QuietEof {}
