//! Task checkpoints: which exactly-once commit a restored task's state belongs to.
//!
//! A restore reads each changelog partition `read_committed` to its end, which is the partition's last stable
//! offset. That end can stand before commits that did happen:
//! - a crashed instance's open transaction holds the last stable offset back until the transaction times out
//!   (`transaction.timeout.ms`), and every commit the partition's next owner writes behind it stays unreadable
//!   meanwhile;
//! - a commit returns once its coordinator has logged it, before the markers reach every partition.
//!
//! The consumer meanwhile resumes after the offsets of the newest commit (the group coordinator answers offset
//! fetches only with stable offsets), so a task restored from less than that commit's state silently lost the
//! records in between. Seen in the chaos run: windows restarting from zero after a takeover.
//!
//! So every exactly-once commit numbers each owned task: the number goes with the task's input offsets (as the
//! offsets' commit metadata) and, in the same transaction, into a checkpoint record in every changelog partition
//! of the task. A restore learns the number of the newest commit from the committed offsets and reads each
//! changelog partition until its checkpoint carries that number, waiting at the end when it does not yet.
//!
//! The metadata also carries the task's watermark at that commit (Kafka Streams keeps its partition time there
//! too): a task resumes at it, instead of without a watermark, where an event its last owner judged late (its
//! window expired and dropped) would open the window again from zero.

use std::collections::BTreeMap;

/// Key of the checkpoint record in a changelog partition; readers of a changelog skip it. Store keys are UTF-8
/// ([`super::StoreKey`]) and 0xFF never occurs in UTF-8, so no store record shares it (compaction keeps the newest
/// checkpoint only).
pub const CHECKPOINT_KEY: &[u8] = b"\xffadstream.checkpoint";

/// Prefix of the commit metadata of a task's input offsets, followed by the commit's number.
const METADATA_PREFIX: &str = "adstream.commit=";
/// Separates the watermark from the number in the commit metadata.
const WATERMARK_FIELD: &str = ";watermark=";

/// The commit metadata of a task's input offsets in commit `number`, with the task's watermark then.
pub(crate) fn offset_metadata(number: u64, watermark: Option<i64>) -> String {
    match watermark {
        Some(watermark) => format!("{METADATA_PREFIX}{number}{WATERMARK_FIELD}{watermark}"),
        None => format!("{METADATA_PREFIX}{number}"),
    }
}

/// The commit number and watermark in an input offset's metadata; None for offsets committed without a number
/// (an older version, at-least-once, another tool).
pub(crate) fn parse_offset_metadata(metadata: &str) -> Option<(u64, Option<i64>)> {
    let fields = metadata.strip_prefix(METADATA_PREFIX)?;
    match fields.split_once(WATERMARK_FIELD) {
        Some((number, watermark)) => Some((number.parse().ok()?, watermark.parse().ok())),
        None => Some((fields.parse().ok()?, None)),
    }
}

/// The value of a checkpoint record of commit `number`: the number as text, readable in any console consumer.
pub(crate) fn checkpoint_value(number: u64) -> String {
    number.to_string()
}

/// The commit number of a checkpoint record's value.
pub(crate) fn parse_checkpoint(value: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(value?).ok()?.parse().ok()
}

/// What the runtime knows of one owned task's last commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskCommit {
    /// Number of the task's last commit; the next one is this plus one.
    pub number: u64,
    /// Next offset to read per input index, as of that commit, for the inputs with a known position.
    pub offsets: BTreeMap<usize, i64>,
    /// The task's watermark at that commit.
    pub watermark: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_numbers_round_trip_through_metadata_and_checkpoints() {
        assert_eq!(
            parse_offset_metadata(&offset_metadata(42, None)),
            Some((42, None))
        );
        assert_eq!(
            parse_offset_metadata(&offset_metadata(42, Some(-5))),
            Some((42, Some(-5)))
        );
        assert_eq!(
            parse_checkpoint(Some(checkpoint_value(7).as_bytes())),
            Some(7)
        );
    }

    #[test]
    fn foreign_metadata_and_damaged_checkpoints_give_no_number() {
        assert_eq!(parse_offset_metadata(""), None);
        assert_eq!(parse_offset_metadata("set by another tool"), None);
        assert_eq!(parse_offset_metadata("adstream.commit=x"), None);
        // A damaged watermark loses the watermark, not the number.
        assert_eq!(
            parse_offset_metadata("adstream.commit=3;watermark=x"),
            Some((3, None))
        );
        assert_eq!(parse_checkpoint(None), None);
        assert_eq!(parse_checkpoint(Some(b"\xff\xfe")), None);
    }
}
