//! A demonstration job, `high-cost-clicks`: forwards the clicks that cost at least `min_cost_micros` to a topic of
//! their own, keyed by campaign. It is what `docs/adding-a-job.md` walks through: settings, ports, constructor
//! (the job's definition) and the operator. A real job keeps these in its folder under `processors/src/`.

use adstream_processors::jobs::{Job, Port, PortList, Stage, Wiring};
use adstream_processors::runtime::{
    ChangelogStore, CodecError, Context, DecodeError, InputSpec, JobError, Operator, OutputSpec,
    Record, TypedDecoder, WireEncoder,
};
use adstream_schemas::events::{avsc, AdClick, AvroRecord};
use serde::{Deserialize, Serialize};

/// Default [`HighCostClicksSettings::min_cost_micros`]: one currency unit.
pub const DEFAULT_MIN_COST_MICROS: i64 = 1_000_000;

/// What the job computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct HighCostClicksSettings {
    /// A click costing at least this much, in micros of its currency, is forwarded.
    #[arg(long, default_value_t = DEFAULT_MIN_COST_MICROS)]
    pub min_cost_micros: i64,
}

impl Default for HighCostClicksSettings {
    fn default() -> Self {
        HighCostClicksSettings {
            min_cost_micros: DEFAULT_MIN_COST_MICROS,
        }
    }
}

/// The job's definition.
pub struct HighCostClicksDefinition;

impl Job for HighCostClicksDefinition {
    const NAME: &'static str = "high-cost-clicks";
    const ABOUT: &'static str = "Clicks that cost at least a threshold, in a topic of their own";
    const PORTS: &'static [Port] = &[
        Port::new("clicks", PortList::Input, AdClick::FULL_NAME),
        Port::new("high_cost", PortList::Output, AdClick::FULL_NAME).named("high-cost"),
    ];
    type Settings = HighCostClicksSettings;

    fn stages(wiring: &Wiring, settings: &Self::Settings) -> Result<Vec<Stage>, JobError> {
        if settings.min_cost_micros < 0 {
            return Err(JobError::Settings(format!(
                "min_cost_micros must not be negative, got {}",
                settings.min_cost_micros
            )));
        }
        Ok(vec![Stage {
            application_id: wiring.application_id().to_owned(),
            operator: Box::new(HighCostClicks {
                clicks: wiring.topic("clicks")?,
                output: wiring.topic("high_cost")?,
                min_cost_micros: settings.min_cost_micros,
                decoder: TypedDecoder::new(AdClick::FULL_NAME, avsc::AD_CLICK)?,
                encoder: None,
                buffer: Vec::new(),
            }),
        }])
    }
}

/// The operator: stateless, one output.
struct HighCostClicks {
    clicks: String,
    output: String,
    min_cost_micros: i64,
    decoder: TypedDecoder,
    encoder: Option<WireEncoder>,
    /// Reused for every encoded value: no allocation per record.
    buffer: Vec<u8>,
}

impl Operator for HighCostClicks {
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::stream(&self.clicks)]
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        vec![OutputSpec {
            topic: self.output.clone(),
            value_schema: avsc::AD_CLICK,
            internal_partitions: None,
            watermark_markers: false,
        }]
    }

    fn stores(&mut self) -> Vec<&mut dyn ChangelogStore> {
        Vec::new()
    }

    fn set_output_schema_ids(&mut self, ids: &[u32]) -> Result<(), CodecError> {
        let [id] = ids else {
            return Err(CodecError::OutputIds {
                expected: 1,
                got: ids.len(),
            });
        };
        self.encoder = Some(WireEncoder::new(avsc::AD_CLICK, *id)?);
        Ok(())
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), DecodeError> {
        let click: AdClick = self.decoder.decode(ctx.schemas, record.value)?;
        if click.cost_micros < self.min_cost_micros {
            return Ok(());
        }
        let Some(encoder) = &self.encoder else {
            return Err(DecodeError::Invalid("output schema not registered".into()));
        };
        self.buffer.clear();
        encoder
            .encode(&click, &mut self.buffer)
            .map_err(|e| DecodeError::Invalid(format!("click does not encode: {e}")))?;
        ctx.emit(
            0,
            click.campaign_id.as_bytes(),
            &self.buffer,
            click.event_time,
            record.correlation_id,
        );
        Ok(())
    }

    fn on_commit(&mut self, _ctx: &mut Context<'_>) {}
}
