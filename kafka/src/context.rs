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

/// Whether a consumer error is the client's report of a broker it cannot reach right now (a broker restarting, a
/// leader moving), which librdkafka recovers from by itself: a read waits it out instead of failing. Everything
/// else (authorization, an unknown topic, a fatal error) is not.
pub fn is_transient_consumer_error(error: &KafkaError) -> bool {
    let code = match error {
        KafkaError::MessageConsumption(code) | KafkaError::Global(code) => *code,
        _ => return false,
    };
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::UnknownLeaderEpoch
            | RDKafkaErrorCode::FencedLeaderEpoch
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_outages_are_transient_and_refusals_are_not() {
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::NotLeaderForPartition,
        ] {
            assert!(is_transient_consumer_error(
                &KafkaError::MessageConsumption(code)
            ));
        }
        assert!(is_transient_consumer_error(&KafkaError::Global(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert!(!is_transient_consumer_error(
                &KafkaError::MessageConsumption(code)
            ));
        }
        assert!(!is_transient_consumer_error(
            &KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::BrokerTransportFailure)
        ));
    }
}
