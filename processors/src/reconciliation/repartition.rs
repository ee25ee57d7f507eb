//! The reconciliation job's first stage: platform report rows (keyed per ad and window) re-keyed by adstream's
//! campaign id into the internal repartition topic, co-partitioned with the impression and click topics.
//!
//! Stateless. A row that cannot be a report (empty campaign id, a window that ends before it starts, negative
//! numbers) goes to `dlq.platform.reports` with its reason.

use adstream_schemas::platform::PlatformReport;

use crate::runtime::{
    ChangelogStore, CodecError, Context, DecodeError, InputSpec, JobError, Operator, OutputSpec,
    Record, TypedDecoder, WireEncoder,
};

/// Topics of the repartition stage.
#[derive(Debug, Clone)]
pub struct ReportRepartitionConfig {
    /// `platform.reports`.
    pub reports: String,
    /// The internal topic the rows go to, keyed by adstream campaign id.
    pub repartitioned: String,
    /// Its partition count: that of the event topics it is co-partitioned with.
    pub partitions: i32,
}

/// The operator; see the module doc.
pub struct ReportRepartition {
    config: ReportRepartitionConfig,
    decoder: TypedDecoder,
    encoder: Option<WireEncoder>,
    key_buffer: String,
    value_buffer: Vec<u8>,
    forwarded: u64,
}

/// adstream's id of the report row's campaign ([`adstream_schemas::events::Platform::global_id`]), written into
/// `out`.
pub fn campaign_key(report: &PlatformReport, out: &mut String) {
    report.platform.write_global_id(&report.campaign_id, out);
}

/// Why `report` cannot be reconciled, if it cannot.
pub fn invalid_report(report: &PlatformReport) -> Option<String> {
    if report.campaign_id.is_empty() || report.ad_id.is_empty() {
        return Some("campaign_id or ad_id is empty".into());
    }
    if report.window_end <= report.window_start {
        return Some(format!(
            "window_end {} is not after window_start {}",
            report.window_end, report.window_start
        ));
    }
    if report.impressions < 0 || report.clicks < 0 || report.spend_micros < 0 {
        return Some("impressions, clicks or spend_micros is negative".into());
    }
    None
}

impl ReportRepartition {
    /// The operator for `config`.
    pub fn new(config: ReportRepartitionConfig) -> Result<ReportRepartition, JobError> {
        Ok(ReportRepartition {
            config,
            decoder: TypedDecoder::new(PlatformReport::FULL_NAME, PlatformReport::SCHEMA)?,
            encoder: None,
            key_buffer: String::new(),
            value_buffer: Vec::new(),
            forwarded: 0,
        })
    }
}

impl Operator for ReportRepartition {
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::stream(&self.config.reports)]
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        vec![OutputSpec {
            topic: self.config.repartitioned.clone(),
            value_schema: PlatformReport::SCHEMA,
            internal_partitions: Some(self.config.partitions),
            watermark_markers: true,
        }]
    }

    fn stores(&mut self) -> Vec<&mut dyn ChangelogStore> {
        Vec::new()
    }

    fn set_output_schema_ids(&mut self, ids: &[u32]) -> Result<(), CodecError> {
        let [repartitioned] = ids else {
            return Err(CodecError::OutputIds {
                expected: 1,
                got: ids.len(),
            });
        };
        self.encoder = Some(WireEncoder::new(PlatformReport::SCHEMA, *repartitioned)?);
        Ok(())
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), DecodeError> {
        let report: PlatformReport = self.decoder.decode(ctx.schemas, record.value)?;
        if let Some(reason) = invalid_report(&report) {
            return Err(DecodeError::Invalid(reason));
        }
        let Some(encoder) = &self.encoder else {
            return Err(DecodeError::Invalid("output schema not registered".into()));
        };
        self.value_buffer.clear();
        encoder
            .encode(&report, &mut self.value_buffer)
            .map_err(|e| DecodeError::Invalid(format!("report does not encode: {e}")))?;
        campaign_key(&report, &mut self.key_buffer);
        ctx.emit(
            0,
            self.key_buffer.as_bytes(),
            &self.value_buffer,
            record.timestamp_ms.unwrap_or(report.window_start),
            record.correlation_id,
        );
        self.forwarded += 1;
        Ok(())
    }

    fn on_commit(&mut self, _ctx: &mut Context<'_>) {}

    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        vec![(
            "reconciliation_reports_forwarded",
            "Platform report rows re-keyed by campaign into the repartition topic.",
            self.forwarded,
        )]
    }
}
