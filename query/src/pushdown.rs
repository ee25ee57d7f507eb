//! Which predicates a topic scan can answer from Kafka's own indexes, and the bounds they set.
//!
//! - `_timestamp` comparisons become per-partition start/end offsets (offsets for times). Inexact: the end is
//!   padded for late records, so the rows are filtered again.
//! - `_partition` comparisons and `IN` lists choose partitions. Exact.
//! - `_offset` comparisons narrow every partition's offset range. Exact on history tables; on latest-per-key
//!   tables they are not pushed (the latest record of a key may lie outside the range).
//! - `_key = 'k'` / `_key IN (...)` choose the partitions those keys hash to with Kafka's default partitioner
//!   (murmur2, as every adstream producer and processor writes). Inexact: rows are filtered by key afterwards.
//!
//! Anything else (including `OR` across these columns) is left to DataFusion.

use adstream_kafka::partitioner::kafka_partition;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};

/// The metadata column of the partition number.
pub const PARTITION: &str = "_partition";
/// The metadata column of the offset.
pub const OFFSET: &str = "_offset";
/// The metadata column of the record timestamp.
pub const TIMESTAMP: &str = "_timestamp";
/// The metadata column of the record key.
pub const KEY: &str = "_key";
/// The metadata column of the record headers.
pub const HEADERS: &str = "_headers";

/// Bounds collected from the pushed-down filters (all conjunctive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanBounds {
    /// Records with timestamps at or after this (epoch millis).
    pub from_ms: Option<i64>,
    /// Records with timestamps before this (epoch millis, exclusive).
    pub to_ms: Option<i64>,
    /// First offset (inclusive).
    pub min_offset: Option<i64>,
    /// Last offset (inclusive).
    pub max_offset: Option<i64>,
    /// Only these partitions (None: all).
    pub partitions: Option<Vec<i32>>,
    /// Only the partitions of these keys (None: all).
    pub keys: Option<Vec<String>>,
}

impl ScanBounds {
    /// The partitions to read out of `count`, after partition and key bounds.
    pub fn chosen_partitions(&self, count: i32) -> Vec<i32> {
        let mut chosen: Vec<i32> = (0..count).collect();
        if let Some(only) = &self.partitions {
            chosen.retain(|p| only.contains(p));
        }
        if let Some(keys) = &self.keys {
            let hashed: Vec<i32> = keys
                .iter()
                .map(|k| kafka_partition(k.as_bytes(), count))
                .collect();
            chosen.retain(|p| hashed.contains(p));
        }
        chosen
    }
}

/// What the table can do with `filter`; `latest` tables (latest per key) push only partition and key bounds.
pub fn support(filter: &Expr, latest: bool) -> TableProviderFilterPushDown {
    match classify(filter) {
        Some(Bound::Time { .. }) if !latest => TableProviderFilterPushDown::Inexact,
        Some(Bound::Offset { .. }) if !latest => TableProviderFilterPushDown::Exact,
        Some(Bound::Partitions(_)) => TableProviderFilterPushDown::Exact,
        Some(Bound::Keys(_)) => TableProviderFilterPushDown::Inexact,
        _ => TableProviderFilterPushDown::Unsupported,
    }
}

/// The bounds set by `filters` (those [`support`] accepted; others are ignored).
pub fn bounds(filters: &[Expr], latest: bool) -> ScanBounds {
    let mut bounds = ScanBounds::default();
    for filter in filters {
        match classify(filter) {
            Some(Bound::Time { from, to }) if !latest => {
                if let Some(from) = from {
                    bounds.from_ms = Some(bounds.from_ms.map_or(from, |b| b.max(from)));
                }
                if let Some(to) = to {
                    bounds.to_ms = Some(bounds.to_ms.map_or(to, |b| b.min(to)));
                }
            }
            Some(Bound::Offset { min, max }) if !latest => {
                if let Some(min) = min {
                    bounds.min_offset = Some(bounds.min_offset.map_or(min, |b| b.max(min)));
                }
                if let Some(max) = max {
                    bounds.max_offset = Some(bounds.max_offset.map_or(max, |b| b.min(max)));
                }
            }
            Some(Bound::Partitions(list)) => {
                bounds.partitions = Some(match bounds.partitions.take() {
                    None => list,
                    Some(existing) => existing.into_iter().filter(|p| list.contains(p)).collect(),
                });
            }
            Some(Bound::Keys(list)) => {
                bounds.keys = Some(match bounds.keys.take() {
                    None => list,
                    Some(existing) => existing.into_iter().filter(|k| list.contains(k)).collect(),
                });
            }
            _ => {}
        }
    }
    bounds
}

enum Bound {
    Time { from: Option<i64>, to: Option<i64> },
    Offset { min: Option<i64>, max: Option<i64> },
    Partitions(Vec<i32>),
    Keys(Vec<String>),
}

fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(column) => Some(column.name.as_str()),
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

/// A timestamp literal as epoch millis, rounding so that comparisons stay correct: `floor` for lower bounds of
/// sub-millisecond values is handled by the caller choosing inclusive/exclusive forms.
fn millis(value: &ScalarValue) -> Option<(i64, bool)> {
    // (millis, exact): `exact` is false when a sub-millisecond part was dropped.
    match value {
        ScalarValue::TimestampMillisecond(Some(v), _) | ScalarValue::Int64(Some(v)) => {
            Some((*v, true))
        }
        ScalarValue::TimestampSecond(Some(v), _) => Some((v.checked_mul(1000)?, true)),
        ScalarValue::TimestampMicrosecond(Some(v), _) => {
            Some((v.div_euclid(1000), v.rem_euclid(1000) == 0))
        }
        ScalarValue::TimestampNanosecond(Some(v), _) => {
            Some((v.div_euclid(1_000_000), v.rem_euclid(1_000_000) == 0))
        }
        _ => None,
    }
}

fn integer(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::Int8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int64(Some(v)) => Some(*v),
        ScalarValue::UInt8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
        _ => None,
    }
}

fn string(value: &ScalarValue) -> Option<String> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

/// `column op literal` with the column on the left (a literal on the left is flipped).
fn comparison(expr: &BinaryExpr) -> Option<(&str, Operator, &ScalarValue)> {
    if let (Some(column), Some(value)) = (column_name(&expr.left), literal(&expr.right)) {
        return Some((column, expr.op, value));
    }
    if let (Some(value), Some(column)) = (literal(&expr.left), column_name(&expr.right)) {
        return Some((column, expr.op.swap()?, value));
    }
    None
}

fn classify(filter: &Expr) -> Option<Bound> {
    match filter {
        Expr::BinaryExpr(binary) => {
            let (column, op, value) = comparison(binary)?;
            match column {
                TIMESTAMP => {
                    let (ms, exact) = millis(value)?;
                    // [from, to) in whole milliseconds containing every matching record.
                    let (from, to) = match op {
                        Operator::Eq => (Some(ms), Some(ms + 1)),
                        Operator::GtEq => (Some(if exact { ms } else { ms + 1 }), None),
                        Operator::Gt => (Some(ms + 1), None),
                        Operator::Lt => (None, Some(if exact { ms } else { ms + 1 })),
                        Operator::LtEq => (None, Some(ms + 1)),
                        _ => return None,
                    };
                    Some(Bound::Time { from, to })
                }
                OFFSET => {
                    let v = integer(value)?;
                    let (min, max) = match op {
                        Operator::Eq => (Some(v), Some(v)),
                        Operator::GtEq => (Some(v), None),
                        Operator::Gt => (Some(v.checked_add(1)?), None),
                        Operator::Lt => (None, Some(v.checked_sub(1)?)),
                        Operator::LtEq => (None, Some(v)),
                        _ => return None,
                    };
                    Some(Bound::Offset { min, max })
                }
                PARTITION => {
                    let v = integer(value)?;
                    let keep: Box<dyn Fn(i64) -> bool> = match op {
                        Operator::Eq => Box::new(move |p| p == v),
                        Operator::NotEq => Box::new(move |p| p != v),
                        Operator::GtEq => Box::new(move |p| p >= v),
                        Operator::Gt => Box::new(move |p| p > v),
                        Operator::Lt => Box::new(move |p| p < v),
                        Operator::LtEq => Box::new(move |p| p <= v),
                        _ => return None,
                    };
                    // Partition numbers are small: enumerate the ones the comparison keeps.
                    Some(Bound::Partitions(
                        (0..=i64::from(MAX_PARTITIONS))
                            .filter(|p| keep(*p))
                            .map(|p| p as i32)
                            .collect(),
                    ))
                }
                KEY if op == Operator::Eq => Some(Bound::Keys(vec![string(value)?])),
                _ => None,
            }
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => match column_name(expr)? {
            PARTITION => Some(Bound::Partitions(
                list.iter()
                    .map(|e| literal(e).and_then(integer).map(|v| v as i32))
                    .collect::<Option<Vec<_>>>()?,
            )),
            KEY => Some(Bound::Keys(
                list.iter()
                    .map(|e| literal(e).and_then(string))
                    .collect::<Option<Vec<_>>>()?,
            )),
            _ => None,
        },
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let column = column_name(expr)?;
            let (low, high) = (literal(low)?, literal(high)?);
            match column {
                TIMESTAMP => {
                    let (from, from_exact) = millis(low)?;
                    let (to, _) = millis(high)?;
                    Some(Bound::Time {
                        from: Some(if from_exact { from } else { from + 1 }),
                        to: Some(to + 1),
                    })
                }
                OFFSET => Some(Bound::Offset {
                    min: Some(integer(low)?),
                    max: Some(integer(high)?),
                }),
                PARTITION => {
                    let (low, high) = (integer(low)?, integer(high)?);
                    Some(Bound::Partitions(
                        (low.max(0)..=high.min(i64::from(MAX_PARTITIONS)))
                            .map(|p| p as i32)
                            .collect(),
                    ))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// More partitions than any topic a query reads (Kafka's practical per-topic limit is far lower).
const MAX_PARTITIONS: i32 = 100_000;

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(ms: i64) -> Expr {
        lit(ScalarValue::TimestampMillisecond(
            Some(ms),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn time_comparisons_become_a_half_open_millisecond_range() {
        let filters = [
            col(TIMESTAMP).gt_eq(ts(1_000)),
            col(TIMESTAMP).lt(ts(5_000)),
        ];
        let b = bounds(&filters, false);
        assert_eq!((b.from_ms, b.to_ms), (Some(1_000), Some(5_000)));
        let b = bounds(
            &[
                col(TIMESTAMP).gt(ts(1_000)),
                ts(5_000).gt_eq(col(TIMESTAMP)),
            ],
            false,
        );
        assert_eq!(
            (b.from_ms, b.to_ms),
            (Some(1_001), Some(5_001)),
            "flipped literal"
        );
        let micros = lit(ScalarValue::TimestampMicrosecond(Some(1_500), None));
        let b = bounds(&[col(TIMESTAMP).gt_eq(micros)], false);
        assert_eq!(
            b.from_ms,
            Some(2),
            "a sub-millisecond lower bound rounds up"
        );
        assert_eq!(
            support(&col(TIMESTAMP).gt_eq(ts(1)), false),
            TableProviderFilterPushDown::Inexact
        );
        assert_eq!(
            support(&col(TIMESTAMP).gt_eq(ts(1)), true),
            TableProviderFilterPushDown::Unsupported,
            "latest-per-key tables cannot narrow by time"
        );
    }

    #[test]
    fn partition_and_offset_bounds_are_exact_and_intersect() {
        let filters = [
            col(PARTITION).in_list(vec![lit(1), lit(3)], false),
            col(PARTITION).gt_eq(lit(2)),
            col(OFFSET).gt(lit(9i64)),
            col(OFFSET).lt_eq(lit(20i64)),
        ];
        let b = bounds(&filters, false);
        assert_eq!(b.partitions, Some(vec![3]));
        assert_eq!((b.min_offset, b.max_offset), (Some(10), Some(20)));
        assert_eq!(b.chosen_partitions(4), vec![3]);
        assert_eq!(
            support(&col(OFFSET).gt(lit(1i64)), false),
            TableProviderFilterPushDown::Exact
        );
        assert_eq!(
            support(&col(OFFSET).gt(lit(1i64)), true),
            TableProviderFilterPushDown::Unsupported
        );
        assert_eq!(
            support(&col("campaign_id").eq(lit("x")), false),
            TableProviderFilterPushDown::Unsupported
        );
    }

    #[test]
    fn a_key_chooses_the_partition_kafka_put_it_in() {
        let b = bounds(&[col(KEY).eq(lit("foobar"))], false);
        // murmur2("foobar") = -790332482 → positive 1357151166 → % 4 = 2.
        assert_eq!(b.chosen_partitions(4), vec![2]);
    }
}
