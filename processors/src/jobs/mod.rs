//! The job registry: every job adstream runs, defined once.
//!
//! A job lives in its own folder (`campaign_metrics/`, `fatigue/`, `attribution/`) and implements [`Job`] in its
//! `job.rs`:
//!
//! - one **settings** type (serde with a default per field, `Default`, a doc comment per field): the command line
//!   flattens it (`adstream process <job> --flag`), a backtest strategy embeds it, a YAML file can hold it;
//! - its **ports**: the topics it reads and writes, declared by the records they carry ([`Port`]) and found in the
//!   job's processor entry of the topology ([`Wiring::resolve`]), so topic names live only in the topology file;
//! - one **constructor** ([`Job::stages`]): the settings and the wiring in, the job's consume–process–produce
//!   stages out (one for most jobs, two for attribution: its repartition stage first).
//!
//! [`JobRegistry::builtin`] lists the jobs. `adstream process <job>`, `adstream jobs`, `topology describe`, the
//! backtest engine and the demo read it; adding a job is its folder, one line in [`JobRegistry::builtin`], its
//! output schema and its topology entries (see `docs/adding-a-job.md`).

mod wiring;

use std::fmt::Debug;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use wiring::{Port, PortList, Wiring, WiringError};

use crate::runtime::dead_letter::{DLQ_PREFIX, LATE_PREFIX};
use crate::runtime::{changelog_topic, JobError, Operator};

/// One consume–process–produce loop of a job: its own consumer group, transactional id and state.
pub struct Stage {
    /// The stage's application id: the job's for its main stage, `<job>-<suffix>` for the others.
    pub application_id: String,
    /// The operator the runtime (or a simulation) drives.
    pub operator: Box<dyn Operator>,
}

impl Stage {
    /// The topics the stage creates for itself when it starts (`topology describe` lists them): repartition
    /// topics it reads or writes, one changelog per state store, and `dlq.<input>` and `late.<input>` per input.
    pub fn internal_topics(&mut self) -> Vec<String> {
        let operator = self.operator.as_mut();
        let mut topics: Vec<String> = operator
            .inputs()
            .into_iter()
            .filter(|input| input.internal_partitions.is_some())
            .map(|input| input.topic)
            .chain(
                operator
                    .outputs()
                    .into_iter()
                    .filter(|output| output.internal_partitions.is_some())
                    .map(|output| output.topic),
            )
            .collect();
        topics.extend(
            operator
                .stores()
                .iter()
                .map(|store| changelog_topic(&self.application_id, store.name())),
        );
        for input in operator.inputs() {
            topics.push(format!("{DLQ_PREFIX}{}", input.topic));
            topics.push(format!("{LATE_PREFIX}{}", input.topic));
        }
        topics
    }
}

/// A stream-processing job.
pub trait Job: 'static {
    /// The job's name: `adstream process <NAME>`, and the default application id (processor name in the
    /// topology, consumer group, changelog and transactional-id prefix).
    const NAME: &'static str;
    /// One line on what the job computes.
    const ABOUT: &'static str;
    /// The topics the job reads and writes.
    const PORTS: &'static [Port];
    /// What the job computes, apart from how it runs (identity, guarantee and commits are the runtime's).
    type Settings: Clone
        + Debug
        + Default
        + Serialize
        + DeserializeOwned
        + clap::Args
        + clap::FromArgMatches
        + Send
        + Sync
        + 'static;

    /// The job's stages over the topics of `wiring`, configured by `settings`; they run in the order given
    /// (side by side when the job runs continuously).
    fn stages(wiring: &Wiring, settings: &Self::Settings) -> Result<Vec<Stage>, JobError>;
}

/// A registered job with its settings type erased: what the command line, `topology describe` and the docs
/// iterate over. Implemented for every [`Job`] through [`entry`].
pub trait JobEntry: Sync {
    /// [`Job::NAME`].
    fn name(&self) -> &'static str;
    /// [`Job::ABOUT`].
    fn about(&self) -> &'static str;
    /// [`Job::PORTS`].
    fn ports(&self) -> &'static [Port];
    /// `command` with the settings' flags added.
    fn augment_args(&self, command: clap::Command) -> clap::Command;
    /// The stages, with the settings read from parsed flags (those added by [`JobEntry::augment_args`]).
    fn stages_from_args(
        &self,
        matches: &clap::ArgMatches,
        wiring: &Wiring,
    ) -> Result<Vec<Stage>, JobError>;
    /// The stages, with the settings read from YAML (an empty text is the defaults); errors name the field.
    fn stages_from_yaml(&self, yaml: &str, wiring: &Wiring) -> Result<Vec<Stage>, JobError>;
    /// The default settings as YAML, one field per line.
    fn default_settings_yaml(&self) -> String;
}

/// The [`JobEntry`] of job `J`.
pub fn entry<J: Job>() -> &'static dyn JobEntry {
    Registered::<J>::ENTRY
}

/// `fn() -> J` rather than `J`: the marker is `Sync` whatever `J` is.
struct Registered<J>(PhantomData<fn() -> J>);

impl<J: Job> Registered<J> {
    const ENTRY: &'static dyn JobEntry = &Registered::<J>(PhantomData);
}

/// Reads settings from YAML: an empty text is the defaults.
pub fn settings_from_yaml<S: DeserializeOwned + Default>(yaml: &str) -> Result<S, JobError> {
    if yaml.trim().is_empty() {
        return Ok(S::default());
    }
    serde_yaml::from_str(yaml).map_err(|e| JobError::Settings(e.to_string()))
}

impl<J: Job> JobEntry for Registered<J> {
    fn name(&self) -> &'static str {
        J::NAME
    }

    fn about(&self) -> &'static str {
        J::ABOUT
    }

    fn ports(&self) -> &'static [Port] {
        J::PORTS
    }

    fn augment_args(&self, command: clap::Command) -> clap::Command {
        <J::Settings as clap::Args>::augment_args(command)
    }

    fn stages_from_args(
        &self,
        matches: &clap::ArgMatches,
        wiring: &Wiring,
    ) -> Result<Vec<Stage>, JobError> {
        let settings = <J::Settings as clap::FromArgMatches>::from_arg_matches(matches)
            .map_err(|e| JobError::Settings(e.to_string()))?;
        J::stages(wiring, &settings)
    }

    fn stages_from_yaml(&self, yaml: &str, wiring: &Wiring) -> Result<Vec<Stage>, JobError> {
        J::stages(wiring, &settings_from_yaml::<J::Settings>(yaml)?)
    }

    fn default_settings_yaml(&self) -> String {
        serde_yaml::to_string(&J::Settings::default())
            .unwrap_or_else(|e| format!("# cannot print the defaults: {e}\n"))
    }
}

/// The jobs a binary offers.
#[derive(Clone)]
pub struct JobRegistry {
    jobs: Vec<&'static dyn JobEntry>,
}

impl JobRegistry {
    /// adstream's jobs. Adding a job: one line here.
    pub fn builtin() -> JobRegistry {
        JobRegistry {
            jobs: vec![
                entry::<crate::campaign_metrics::job::CampaignMetricsDefinition>(),
                entry::<crate::fatigue::job::CreativeFatigueDefinition>(),
                entry::<crate::attribution::job::AttributionDefinition>(),
                entry::<crate::reconciliation::job::ReconciliationDefinition>(),
            ],
        }
    }

    /// This registry and `job` (for jobs outside this crate, e.g. a plugin binary or a test).
    pub fn with(mut self, job: &'static dyn JobEntry) -> JobRegistry {
        self.jobs.push(job);
        self
    }

    /// The jobs in registration order.
    pub fn jobs(&self) -> &[&'static dyn JobEntry] {
        &self.jobs
    }

    /// The job named `name`.
    pub fn get(&self, name: &str) -> Option<&'static dyn JobEntry> {
        self.jobs.iter().copied().find(|job| job.name() == name)
    }

    /// The job a processor entry of the topology runs: its `job` field, else the job named like it.
    pub fn job_of(
        &self,
        processor: &adstream_topology::Processor,
    ) -> Option<&'static dyn JobEntry> {
        self.get(processor.job_name())
    }
}

#[cfg(test)]
mod tests;
