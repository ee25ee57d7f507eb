//! A Kafka topic as a DataFusion table: its history (every record) or its latest value per key (what compaction
//! keeps).
//!
//! Columns: the value's fields under the topic's latest registered schema (records written under older or newer
//! compatible schemas are resolved to it), then `_partition`, `_offset`, `_timestamp` (the record timestamp, UTC),
//! `_key` (UTF-8) and `_headers` (list of key/value structs, in record order).
//!
//! Planning (`scan`) asks Kafka only for metadata: partition counts, watermarks and offsets for times. Execution
//! reads each partition's offset range on tokio's blocking pool and sends Arrow batches through a bounded channel,
//! so memory stays at a few batches per partition whatever the topic's size. Only the projected columns are built,
//! values are not decoded at all when no value column is asked for (`count(*)`), and headers are parsed only for
//! `_headers`. Flat value columns are read from the Avro payload straight into Arrow builders
//! ([`crate::avro_direct`]); other projections go through `apache_avro` values ([`crate::avro_arrow`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use adstream_processors::runtime::headers::{key_text, KafkaHeaders};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::Schema;
use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Int32Array, Int64Array, ListArray, RecordBatch, RecordBatchOptions, StringBuilder,
    StructArray, TimestampMillisecondArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{
    DataType, Field, Fields, Schema as ArrowSchema, SchemaRef, TimeUnit,
};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;

use crate::avro_arrow::{build_column, record_fields};
use crate::avro_direct::{Cell, DirectColumns, DirectPlan, Plans, Store};
use crate::pushdown::{self, ScanBounds, HEADERS, KEY, OFFSET, PARTITION, TIMESTAMP};
use crate::source::{KafkaSource, PartitionRange, TimestampOrder};
use crate::QueryError;

/// Rows per Arrow batch.
const BATCH_ROWS: usize = 8192;
/// Batches buffered per partition between the Kafka reader and the query.
const CHANNEL_BATCHES: usize = 2;

/// Every record, or the latest value per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableMode {
    /// Every record in offset order (tombstones included, as rows whose value columns are null).
    History,
    /// The latest record per key; a key whose latest record is a tombstone is absent.
    LatestPerKey,
}

/// A topic as a table.
pub struct TopicTable {
    source: Arc<KafkaSource>,
    topic: String,
    mode: TableMode,
    /// The reader schema: the latest registered under the topic's value subject.
    reader: &'static Schema,
    /// Arrow fields of the value, then the metadata columns.
    schema: SchemaRef,
    value_fields: usize,
    /// Whether a time range may end its read early ([`TopicTable::in_timestamp_order`]).
    order: TimestampOrder,
}

impl fmt::Debug for TopicTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicTable")
            .field("topic", &self.topic)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The metadata columns, after the value's.
fn metadata_fields() -> Vec<Field> {
    let header = Fields::from(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
    ]);
    vec![
        Field::new(PARTITION, DataType::Int32, false),
        Field::new(OFFSET, DataType::Int64, false),
        Field::new(
            TIMESTAMP,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new(KEY, DataType::Utf8, true),
        Field::new(
            HEADERS,
            DataType::List(Arc::new(Field::new(
                "header",
                DataType::Struct(header),
                true,
            ))),
            true,
        ),
    ]
}

impl TopicTable {
    /// The table of `topic` whose values are read with `reader` (usually the latest schema of `<topic>-value`).
    pub fn new(
        source: Arc<KafkaSource>,
        topic: &str,
        reader: Schema,
        mode: TableMode,
    ) -> Result<TopicTable, QueryError> {
        let mut fields = record_fields(&reader).map_err(|e| QueryError::Schema {
            topic: topic.to_owned(),
            message: e.to_string(),
        })?;
        let value_fields = fields.len();
        for meta in metadata_fields() {
            if fields.iter().any(|f| f.name() == meta.name()) {
                return Err(QueryError::Schema {
                    topic: topic.to_owned(),
                    message: format!(
                        "value field {} collides with the metadata column",
                        meta.name()
                    ),
                });
            }
            fields.push(meta);
        }
        Ok(TopicTable {
            source,
            topic: topic.to_owned(),
            mode,
            reader: Box::leak(Box::new(reader)),
            schema: Arc::new(ArrowSchema::new(fields)),
            value_fields,
            order: TimestampOrder::Unordered,
        })
    }

    /// The topic is written roughly in timestamp order (an event stream, not a processor's output): a query with
    /// an upper bound on `_timestamp` stops reading a partition past the bound plus the source's maximum
    /// lateness instead of at its end ([`TimestampOrder`]).
    pub fn in_timestamp_order(mut self) -> TopicTable {
        self.order = TimestampOrder::Roughly;
        self
    }

    /// The table of `topic` read with the latest schema registered under `<topic>-value`.
    pub fn from_registry(
        source: Arc<KafkaSource>,
        topic: &str,
        mode: TableMode,
    ) -> Result<TopicTable, QueryError> {
        let (_, reader) = source.latest_schema(&format!("{topic}-value"))?;
        TopicTable::new(source, topic, reader, mode)
    }

    /// The Kafka topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

#[async_trait]
impl TableProvider for TopicTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let latest = self.mode == TableMode::LatestPerKey;
        Ok(filters
            .iter()
            .map(|f| pushdown::support(f, latest))
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let latest = self.mode == TableMode::LatestPerKey;
        let bounds = pushdown::bounds(filters, latest);
        let source = self.source.clone();
        let topic = self.topic.clone();
        let planned = bounds.clone();
        let order = self.order;
        // Metadata only (watermarks, offsets for times), on the blocking pool: librdkafka calls block.
        let ranges =
            tokio::task::spawn_blocking(move || plan(&source, &topic, &planned, latest, order))
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let schema = Arc::new(self.schema.project(&projection)?);
        let planned_offsets: u64 = ranges.iter().map(PartitionRange::len).sum();
        self.source
            .progress()
            .planned
            .fetch_add(planned_offsets, std::sync::atomic::Ordering::Relaxed);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(ranges.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(TopicScanExec {
            source: self.source.clone(),
            topic: self.topic.clone(),
            mode: self.mode,
            reader: self.reader,
            schema,
            projection,
            value_fields: self.value_fields,
            ranges,
            bounds,
            limit,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

fn plan(
    source: &KafkaSource,
    topic: &str,
    bounds: &ScanBounds,
    latest: bool,
    order: TimestampOrder,
) -> Result<Vec<PartitionRange>, QueryError> {
    let count = source.partitions(topic)?;
    let chosen = bounds.chosen_partitions(count);
    let (from, to) = if latest {
        (None, None)
    } else {
        (bounds.from_ms, bounds.to_ms)
    };
    let mut ranges = source.plan_ranges(topic, Some(&chosen), from, to, order)?;
    for range in &mut ranges {
        if let Some(min) = bounds.min_offset {
            range.start = range.start.max(min);
        }
        if let Some(max) = bounds.max_offset {
            range.end = range.end.min(max.saturating_add(1));
        }
        range.end = range.end.max(range.start);
    }
    Ok(ranges)
}

/// Reads the offset ranges of one scan, one output partition per Kafka partition.
struct TopicScanExec {
    source: Arc<KafkaSource>,
    topic: String,
    mode: TableMode,
    reader: &'static Schema,
    /// Projected schema.
    schema: SchemaRef,
    /// Projected column indexes into the table's schema.
    projection: Vec<usize>,
    value_fields: usize,
    ranges: Vec<PartitionRange>,
    bounds: ScanBounds,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for TopicScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicScanExec")
            .field("topic", &self.topic)
            .field("ranges", &self.ranges)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for TopicScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offsets: u64 = self.ranges.iter().map(PartitionRange::len).sum();
        let ranges: Vec<String> = self
            .ranges
            .iter()
            .map(|r| format!("{}:{}..{}", r.partition, r.start, r.end))
            .collect();
        write!(
            f,
            "TopicScanExec: topic={}, mode={:?}, offsets={offsets}, ranges=[{}]",
            self.topic,
            self.mode,
            ranges.join(", ")
        )?;
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for TopicScanExec {
    fn name(&self) -> &str {
        "TopicScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let mut builder =
            RecordBatchReceiverStreamBuilder::new(self.schema.clone(), CHANNEL_BATCHES);
        let Some(range) = self.ranges.get(partition).copied() else {
            // No partition chosen: one empty output partition.
            return Ok(builder.build());
        };
        let fetched = MetricBuilder::new(&self.metrics).counter("records_fetched", partition);
        let undecodable = MetricBuilder::new(&self.metrics).counter("undecodable", partition);
        let decoded_directly =
            MetricBuilder::new(&self.metrics).counter("rows_decoded_directly", partition);
        let mut decoder = BatchDecoder {
            source: self.source.clone(),
            reader: self.reader,
            readers: HashMap::new(),
            schema: self.schema.clone(),
            projection: self.projection.clone(),
            value_fields: self.value_fields,
            plans: Plans::new(),
            undecodable,
            decoded_directly,
        };
        let source = self.source.clone();
        let topic = self.topic.clone();
        let mode = self.mode;
        let bounds = self.bounds.clone();
        let limit = self.limit;
        let tx = builder.tx();
        builder.spawn_blocking(move || {
            let result = match mode {
                TableMode::History => read_history(
                    &source,
                    &topic,
                    range,
                    &bounds,
                    limit,
                    &mut decoder,
                    &fetched,
                    &tx,
                ),
                TableMode::LatestPerKey => {
                    read_latest(&source, &topic, range, &mut decoder, &fetched, &tx)
                }
            };
            result.map_err(|e| DataFusionError::External(Box::new(e)))
        });
        Ok(builder.build())
    }
}

type BatchSender = tokio::sync::mpsc::Sender<DfResult<RecordBatch>>;

/// Reads a history range, dropping rows outside the time bounds early (DataFusion filters them again).
#[allow(clippy::too_many_arguments)]
fn read_history(
    source: &KafkaSource,
    topic: &str,
    range: PartitionRange,
    bounds: &ScanBounds,
    limit: Option<usize>,
    decoder: &mut BatchDecoder,
    fetched: &Count,
    tx: &BatchSender,
) -> Result<(), QueryError> {
    let mut sent = 0usize;
    let in_time = |ts: Option<i64>| match ts {
        None => bounds.from_ms.is_none() && bounds.to_ms.is_none(),
        Some(ts) => {
            bounds.from_ms.is_none_or(|from| ts >= from) && bounds.to_ms.is_none_or(|to| ts < to)
        }
    };
    source.read_range(topic, range, BATCH_ROWS, |messages| {
        fetched.add(messages.len());
        let rows: Vec<RowRef<'_>> = messages
            .iter()
            .filter(|m| !is_watermark_marker(m))
            .filter(|m| in_time(m.timestamp().to_millis()))
            .map(RowRef::from)
            .collect();
        let batch = decoder.decode(&rows)?;
        sent += batch.num_rows();
        if batch.num_rows() > 0 && tx.blocking_send(Ok(batch)).is_err() {
            // The query stopped reading (a LIMIT was met, or it was cancelled).
            return Ok(false);
        }
        Ok(limit.is_none_or(|limit| sent < limit))
    })
}

/// Reads a whole partition keeping the latest record per key (a tombstone removes the key), then decodes the
/// survivors in offset order.
fn read_latest(
    source: &KafkaSource,
    topic: &str,
    range: PartitionRange,
    decoder: &mut BatchDecoder,
    fetched: &Count,
    tx: &BatchSender,
) -> Result<(), QueryError> {
    let mut latest: HashMap<Vec<u8>, OwnedRow> = HashMap::new();
    source.read_range(topic, range, BATCH_ROWS, |messages| {
        fetched.add(messages.len());
        for message in messages {
            let Some(key) = message.key() else {
                continue;
            };
            match message.payload() {
                None => {
                    latest.remove(key);
                }
                Some(_) => {
                    latest.insert(key.to_vec(), OwnedRow::from(message));
                }
            }
        }
        Ok(true)
    })?;
    let mut rows: Vec<OwnedRow> = latest.into_values().collect();
    rows.sort_unstable_by_key(|row| row.offset);
    for chunk in rows.chunks(BATCH_ROWS) {
        let refs: Vec<RowRef<'_>> = chunk.iter().map(RowRef::from).collect();
        let batch = decoder.decode(&refs)?;
        if tx.blocking_send(Ok(batch)).is_err() {
            break;
        }
    }
    Ok(())
}

/// Watermark markers (see the processors' runtime) are progress announcements, not data.
fn is_watermark_marker(message: &BorrowedMessage<'_>) -> bool {
    message.key().is_none()
        && message.payload().is_none()
        && KafkaHeaders::of(message)
            .iter()
            .any(|(key, _)| key == b"adstream_watermark")
}

/// A record kept past its consumer batch.
struct OwnedRow {
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl From<&BorrowedMessage<'_>> for OwnedRow {
    fn from(message: &BorrowedMessage<'_>) -> OwnedRow {
        OwnedRow {
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: KafkaHeaders::of(message)
                .iter()
                .map(|(key, value)| (key_text(key).into_owned(), value.map(<[u8]>::to_vec)))
                .collect(),
        }
    }
}

/// One record's parts, borrowed from a consumer message or an [`OwnedRow`].
struct RowRef<'a> {
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: RowHeaders<'a>,
}

/// Where a row's headers are: librdkafka parses a message's headers (an allocation per header) only when asked,
/// so they are read only when the `_headers` column is projected.
enum RowHeaders<'a> {
    Message(&'a BorrowedMessage<'a>),
    Owned(&'a [(String, Option<Vec<u8>>)]),
}

impl RowHeaders<'_> {
    /// Each header as (key text, value bytes), in record order.
    fn each(&self, mut header: impl FnMut(&str, Option<&[u8]>)) {
        match self {
            RowHeaders::Message(message) => {
                for (key, value) in KafkaHeaders::of(message).iter() {
                    header(&key_text(key), value);
                }
            }
            RowHeaders::Owned(headers) => {
                for (key, value) in headers.iter() {
                    header(key, value.as_deref());
                }
            }
        }
    }
}

impl<'a> From<&'a BorrowedMessage<'a>> for RowRef<'a> {
    fn from(message: &'a BorrowedMessage<'a>) -> RowRef<'a> {
        RowRef {
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key(),
            value: message.payload(),
            headers: RowHeaders::Message(message),
        }
    }
}

impl<'a> From<&'a OwnedRow> for RowRef<'a> {
    fn from(row: &'a OwnedRow) -> RowRef<'a> {
        RowRef {
            partition: row.partition,
            offset: row.offset,
            timestamp: row.timestamp,
            key: row.key.as_deref(),
            value: row.value.as_deref(),
            headers: RowHeaders::Owned(&row.headers),
        }
    }
}

/// Why one record's value cannot be decoded (the record is skipped and counted).
#[derive(Debug, thiserror::Error)]
enum UndecodableValue {
    /// The payload does not start with the wire format's magic byte and schema id.
    #[error("not Confluent wire format")]
    NotWireFormat,
    /// The writer schema could not be fetched or parsed.
    #[error(transparent)]
    WriterSchema(#[from] QueryError),
    /// The writer schema does not resolve to the table's schema.
    #[error("schema id {id} cannot be read with the table's schema: {reason}")]
    Unresolvable {
        /// The writer schema id.
        id: u32,
        /// Why.
        reason: apache_avro::Error,
    },
    /// No datum reader is cached for the id (cannot happen: one was just inserted).
    #[error("schema id {0}: no reader")]
    NoReader(u32),
    /// The datum does not decode with its writer schema.
    #[error("schema id {id}: {reason}")]
    Datum {
        /// The writer schema id.
        id: u32,
        /// Why.
        reason: apache_avro::Error,
    },
}

/// The projected value columns of a batch, and the rows they hold (undecodable ones left out).
type Decoded<'r, 'a> = (Vec<ArrayRef>, Vec<&'r RowRef<'a>>);

/// Consumer records → Arrow batches of the projected columns.
struct BatchDecoder {
    source: Arc<KafkaSource>,
    reader: &'static Schema,
    /// Datum readers per writer schema id (resolving to the reader schema when they differ).
    readers: HashMap<u32, GenericDatumReader<'static>>,
    schema: SchemaRef,
    projection: Vec<usize>,
    value_fields: usize,
    /// Direct Avro → Arrow plans per writer schema id (see [`crate::avro_direct`]).
    plans: Plans,
    undecodable: Count,
    /// Rows whose values took the direct path (EXPLAIN ANALYZE shows it beside `undecodable`).
    decoded_directly: Count,
}

impl BatchDecoder {
    fn datum_reader(&mut self, id: u32) -> Result<&GenericDatumReader<'static>, UndecodableValue> {
        if !self.readers.contains_key(&id) {
            let writer = self.source.writer_schema(id)?;
            let builder = GenericDatumReader::builder(writer);
            let reader = if writer.canonical_form() == self.reader.canonical_form() {
                builder.build()
            } else {
                builder.reader_schema(self.reader).build()
            }
            .map_err(|reason| UndecodableValue::Unresolvable { id, reason })?;
            self.readers.insert(id, reader);
        }
        self.readers.get(&id).ok_or(UndecodableValue::NoReader(id))
    }

    /// The value of one Confluent wire-format payload as a resolved record.
    fn value(&mut self, payload: &[u8]) -> Result<Value, UndecodableValue> {
        let (id, mut datum) =
            adstream_schemas::wire::split(payload).map_err(|_| UndecodableValue::NotWireFormat)?;
        self.datum_reader(id)?
            .read_value(&mut datum)
            .map_err(|reason| UndecodableValue::Datum { id, reason })
    }

    /// The projected value columns' (reader field index, store) in projection order, when every one of them has
    /// a store the direct path builds.
    fn direct_slots(&self) -> Option<Vec<(usize, Store)>> {
        self.projection
            .iter()
            .enumerate()
            .filter(|(_, index)| **index < self.value_fields)
            .map(|(position, index)| {
                Some((*index, Store::of(self.schema.field(position).data_type())?))
            })
            .collect()
    }

    /// Whether the records of writer schema `id` have a direct plan (built on first sight).
    fn has_plan(&mut self, id: u32, slots: &[(usize, Store)]) -> bool {
        let (source, reader) = (&self.source, self.reader);
        self.plans
            .entry(id)
            .or_insert_with(|| {
                // A writer schema the registry cannot give is the general path's to count as undecodable.
                source
                    .writer_schema(id)
                    .ok()
                    .and_then(|writer| DirectPlan::new(writer, reader, slots))
            })
            .is_some()
    }

    /// The projected value columns of `rows` read straight from Avro into Arrow, and the rows they hold; None
    /// when a column or a writer schema of the batch is not for the direct path.
    fn decode_direct<'r, 'a>(
        &mut self,
        rows: &'r [RowRef<'a>],
    ) -> Result<Option<Decoded<'r, 'a>>, QueryError> {
        let Some(slots) = self.direct_slots() else {
            return Ok(None);
        };
        for row in rows {
            if let Some(Ok((id, _))) = row.value.map(adstream_schemas::wire::split) {
                if !self.has_plan(id, &slots) {
                    return Ok(None);
                }
            }
        }
        let stores: Vec<Store> = slots.iter().map(|(_, store)| *store).collect();
        let mut columns = DirectColumns::new(&stores, rows.len());
        let mut cells = vec![Cell::Null; slots.len()];
        let mut kept = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(payload) = row.value else {
                cells.fill(Cell::Null);
                columns.push(&cells);
                kept.push(row);
                continue;
            };
            let read = match adstream_schemas::wire::split(payload) {
                Err(_) => Err(UndecodableValue::NotWireFormat.to_string()),
                Ok((id, datum)) => match self.plans.get(&id) {
                    Some(Some(plan)) => plan
                        .read(datum, &mut cells)
                        .map_err(|reason| format!("schema id {id}: {reason}")),
                    _ => Err(UndecodableValue::NoReader(id).to_string()),
                },
            };
            match read {
                Ok(()) => {
                    columns.push(&cells);
                    kept.push(row);
                }
                Err(message) => {
                    self.undecodable.add(1);
                    tracing::debug!(partition = row.partition, offset = row.offset, %message, "undecodable record skipped");
                }
            }
        }
        let fields: Vec<&Field> = self
            .projection
            .iter()
            .enumerate()
            .filter(|(_, index)| **index < self.value_fields)
            .map(|(position, _)| self.schema.field(position))
            .collect();
        let arrays = columns.finish(&fields).map_err(|e| QueryError::Schema {
            topic: String::new(),
            message: e.to_string(),
        })?;
        self.decoded_directly.add(kept.len());
        Ok(Some((arrays, kept)))
    }

    /// The projected value columns of `rows` through `apache_avro`'s resolver, and the rows they hold.
    fn decode_general<'r, 'a>(
        &mut self,
        rows: &'r [RowRef<'a>],
    ) -> Result<Decoded<'r, 'a>, QueryError> {
        let mut values: Vec<Option<Value>> = Vec::with_capacity(rows.len());
        let mut kept = Vec::with_capacity(rows.len());
        for row in rows {
            match row.value.map(|payload| self.value(payload)) {
                None => values.push(None),
                Some(Ok(value)) => values.push(Some(value)),
                Some(Err(message)) => {
                    // Counted and reported (EXPLAIN ANALYZE, the CLI's summary); the dead-letter tools show
                    // such records in full.
                    self.undecodable.add(1);
                    tracing::debug!(partition = row.partition, offset = row.offset, %message, "undecodable record skipped");
                    continue;
                }
            }
            kept.push(row);
        }
        let mut columns = Vec::new();
        for (position, &index) in self.projection.iter().enumerate() {
            if index >= self.value_fields {
                continue;
            }
            let field = self.schema.field(position);
            let cells: Vec<Option<&Value>> = values
                .iter()
                .map(|value| match value {
                    Some(Value::Record(fields)) => fields.get(index).map(|(_, v)| v),
                    _ => None,
                })
                .collect();
            columns.push(
                build_column(field.name(), field.data_type(), &cells).map_err(|e| {
                    QueryError::Schema {
                        topic: String::new(),
                        message: e.to_string(),
                    }
                })?,
            );
        }
        Ok((columns, kept))
    }

    fn decode(&mut self, rows: &[RowRef<'_>]) -> Result<RecordBatch, QueryError> {
        let wants_value = self.projection.iter().any(|&i| i < self.value_fields);
        let (value_columns, kept) = if !wants_value {
            (Vec::new(), rows.iter().collect())
        } else if let Some(direct) = self.decode_direct(rows)? {
            direct
        } else {
            self.decode_general(rows)?
        };
        let mut value_columns = value_columns.into_iter();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.projection.len());
        for (position, &index) in self.projection.iter().enumerate() {
            let field = self.schema.field(position);
            let column: ArrayRef = if index < self.value_fields {
                value_columns.next().ok_or_else(|| QueryError::Schema {
                    topic: String::new(),
                    message: format!("no column decoded for {}", field.name()),
                })?
            } else {
                match field.name().as_str() {
                    PARTITION => Arc::new(Int32Array::from_iter_values(
                        kept.iter().map(|r| r.partition),
                    )),
                    OFFSET => Arc::new(Int64Array::from_iter_values(kept.iter().map(|r| r.offset))),
                    TIMESTAMP => Arc::new(
                        TimestampMillisecondArray::from_iter(kept.iter().map(|r| r.timestamp))
                            .with_timezone("UTC"),
                    ),
                    KEY => {
                        let mut keys = StringBuilder::with_capacity(kept.len(), kept.len() * 16);
                        for row in &kept {
                            keys.append_option(row.key.map(String::from_utf8_lossy));
                        }
                        Arc::new(keys.finish())
                    }
                    _ => headers_column(field, &kept)?,
                }
            };
            columns.push(column);
        }
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(kept.len())),
        )
        .map_err(|e| QueryError::Schema {
            topic: String::new(),
            message: e.to_string(),
        })
    }
}

fn headers_column(field: &Field, rows: &[&RowRef<'_>]) -> Result<ArrayRef, QueryError> {
    let DataType::List(item) = field.data_type() else {
        return Err(QueryError::Schema {
            topic: String::new(),
            message: format!("{} is not a list column", field.name()),
        });
    };
    let DataType::Struct(entry_fields) = item.data_type() else {
        return Err(QueryError::Schema {
            topic: String::new(),
            message: format!("{} items are not structs", field.name()),
        });
    };
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    offsets.push(0i32);
    let mut keys = StringBuilder::new();
    let mut values = StringBuilder::new();
    let mut entries = 0i32;
    for row in rows {
        row.headers.each(|key, value| {
            keys.append_value(key);
            values.append_option(value.map(String::from_utf8_lossy));
            entries += 1;
        });
        offsets.push(entries);
    }
    let entries = StructArray::try_new(
        entry_fields.clone(),
        vec![Arc::new(keys.finish()), Arc::new(values.finish())],
        None,
    )
    .map_err(|e| QueryError::Schema {
        topic: String::new(),
        message: e.to_string(),
    })?;
    ListArray::try_new(
        item.clone(),
        OffsetBuffer::new(offsets.into()),
        Arc::new(entries),
        None,
    )
    .map(|list| Arc::new(list) as ArrayRef)
    .map_err(|e| QueryError::Schema {
        topic: String::new(),
        message: e.to_string(),
    })
}
