//! The attribution job's first stage: impressions and clicks (keyed by campaign) re-keyed by user into the
//! internal repartition topic, so that a user's touches and conversions meet in one partition of the second stage.
//!
//! Stateless: each impression or click with a user id becomes one [`AttributionTouch`] keyed by that user id
//! (partitioned with the same murmur2 partitioner as the conversions topic, so partition n of both holds the same
//! users). Under exactly-once the touches and the consumed offsets commit in one transaction, like every job.
//! Impressions and clicks without a user id cannot be attributed to anyone and are counted, not forwarded.

use std::borrow::Cow;

use adstream_schemas::binary::Cell;
use adstream_schemas::events::{avsc, AdClick, AdImpression, AvroRecord};
use adstream_schemas::outputs::{AttributionTouch, AttributionTouchRef, TouchKind};

use crate::runtime::{
    cell_long, cell_optional_text, cell_text, ChangelogStore, CodecError, Context, DecodeError,
    InputSpec, JobError, Operator, OutputSpec, ProjectedDecoder, Record, TypedDecoder, WireEncoder,
};

/// Topics of the repartition stage.
#[derive(Debug, Clone)]
pub struct RepartitionConfig {
    /// Impressions topic (keyed by campaign).
    pub impressions: String,
    /// Clicks topic (keyed by campaign).
    pub clicks: String,
    /// The internal topic the touches go to, keyed by user id.
    pub touches: String,
    /// Partition count of the internal topic: that of the conversions topic it is co-partitioned with.
    pub partitions: i32,
}

/// Counters of the stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepartitionCounters {
    /// Touches forwarded.
    pub forwarded: u64,
    /// Impressions and clicks without a user id.
    pub without_user: u64,
}

/// The operator; see the module doc.
pub struct TouchRepartition {
    config: RepartitionConfig,
    /// Impressions and clicks by projection (the fields of [`TOUCH_FIELDS`], borrowed), with the full decoders
    /// for writer schemas the projection does not cover.
    impressions: ProjectedDecoder,
    clicks: ProjectedDecoder,
    impression_decoder: TypedDecoder,
    click_decoder: TypedDecoder,
    encoder: Option<WireEncoder>,
    value_buffer: Vec<u8>,
    counters: RepartitionCounters,
}

const IMPRESSIONS: usize = 0;

impl TouchRepartition {
    /// The operator for `config`.
    pub fn new(config: RepartitionConfig) -> Result<TouchRepartition, JobError> {
        Ok(TouchRepartition {
            config,
            impressions: ProjectedDecoder::new(
                AdImpression::FULL_NAME,
                avsc::AD_IMPRESSION,
                &TOUCH_FIELDS,
            )?,
            clicks: ProjectedDecoder::new(AdClick::FULL_NAME, avsc::AD_CLICK, &TOUCH_FIELDS)?,
            impression_decoder: TypedDecoder::new(AdImpression::FULL_NAME, avsc::AD_IMPRESSION)?,
            click_decoder: TypedDecoder::new(AdClick::FULL_NAME, avsc::AD_CLICK)?,
            encoder: None,
            value_buffer: Vec::new(),
            counters: RepartitionCounters::default(),
        })
    }

    /// Counters so far.
    pub fn counters(&self) -> RepartitionCounters {
        self.counters
    }

    /// Encodes the touch of `record` into `value_buffer`; None for an event without user (nothing encoded).
    fn encode_touch<'a>(
        &mut self,
        record: &Record<'a>,
        ctx: &mut Context<'_>,
    ) -> Result<Option<(Cow<'a, str>, i64)>, DecodeError> {
        let (kind, projected, full) = if record.input == IMPRESSIONS {
            (
                TouchKind::View,
                &mut self.impressions,
                &mut self.impression_decoder,
            )
        } else {
            (TouchKind::Click, &mut self.clicks, &mut self.click_decoder)
        };
        let mut cells = [Cell::Null; TOUCH_FIELDS.len()];
        let owned: AttributionTouch;
        let (touch, user_key) = if projected.decode(ctx.schemas, record.value, &mut cells)? {
            let text = |index| cell_text(&cells, &TOUCH_FIELDS, index);
            let Some(user_id) = cell_optional_text(&cells, &TOUCH_FIELDS, 2)? else {
                return Ok(None);
            };
            let touch = AttributionTouchRef {
                event_id: text(0)?,
                kind,
                event_time: cell_long(&cells, &TOUCH_FIELDS, 1)?,
                user_id,
                campaign_id: text(3)?,
                creative_id: text(4)?,
            };
            (touch, Cow::Borrowed(user_id))
        } else {
            let (event_id, event_time, user_id, campaign_id, creative_id) =
                if record.input == IMPRESSIONS {
                    let i: AdImpression = full.decode(ctx.schemas, record.value)?;
                    (
                        i.event_id,
                        i.event_time,
                        i.user_id,
                        i.campaign_id,
                        i.creative_id,
                    )
                } else {
                    let c: AdClick = full.decode(ctx.schemas, record.value)?;
                    (
                        c.event_id,
                        c.event_time,
                        c.user_id,
                        c.campaign_id,
                        c.creative_id,
                    )
                };
            let Some(user_id) = user_id else {
                return Ok(None);
            };
            owned = AttributionTouch {
                event_id,
                kind,
                event_time,
                user_id,
                campaign_id,
                creative_id,
            };
            let touch = AttributionTouchRef {
                event_id: &owned.event_id,
                kind,
                event_time,
                user_id: &owned.user_id,
                campaign_id: &owned.campaign_id,
                creative_id: &owned.creative_id,
            };
            (touch, Cow::Owned(owned.user_id.clone()))
        };
        if touch.user_id.is_empty() {
            return Ok(None);
        }
        if touch.campaign_id.is_empty() {
            return Err(DecodeError::Invalid("campaign_id is empty".into()));
        }
        let Some(encoder) = &self.encoder else {
            return Err(DecodeError::Invalid("output schema not registered".into()));
        };
        self.value_buffer.clear();
        encoder
            .encode(&touch, &mut self.value_buffer)
            .map_err(|e| DecodeError::Invalid(format!("touch does not encode: {e}")))?;
        Ok(Some((user_key, touch.event_time)))
    }
}

/// The fields of impressions and clicks a touch carries, in cell order.
const TOUCH_FIELDS: [&str; 5] = [
    "event_id",
    "event_time",
    "user_id",
    "campaign_id",
    "creative_id",
];

impl Operator for TouchRepartition {
    fn inputs(&self) -> Vec<InputSpec> {
        vec![
            InputSpec::stream(&self.config.impressions),
            InputSpec::stream(&self.config.clicks),
        ]
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        vec![OutputSpec {
            topic: self.config.touches.clone(),
            value_schema: AttributionTouch::SCHEMA,
            internal_partitions: Some(self.config.partitions),
            watermark_markers: true,
        }]
    }

    fn stores(&mut self) -> Vec<&mut dyn ChangelogStore> {
        Vec::new()
    }

    fn set_output_schema_ids(&mut self, ids: &[u32]) -> Result<(), CodecError> {
        let [touches] = ids else {
            return Err(CodecError::OutputIds {
                expected: 1,
                got: ids.len(),
            });
        };
        self.encoder = Some(WireEncoder::new(AttributionTouch::SCHEMA, *touches)?);
        Ok(())
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), DecodeError> {
        let Some((user_id, event_time)) = self.encode_touch(record, ctx)? else {
            self.counters.without_user += 1;
            return Ok(());
        };
        ctx.emit(
            0,
            user_id.as_bytes(),
            &self.value_buffer,
            event_time,
            record.correlation_id,
        );
        self.counters.forwarded += 1;
        Ok(())
    }

    fn on_commit(&mut self, _ctx: &mut Context<'_>) {}

    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        vec![
            (
                "touches_forwarded",
                "Impressions and clicks re-keyed by user into the repartition topic.",
                self.counters.forwarded,
            ),
            (
                "touches_without_user",
                "Impressions and clicks without a user id (not attributable).",
                self.counters.without_user,
            ),
        ]
    }
}
