//! `adstream connect run <platform>`: one platform's connector (`adstream_connectors`), configured by the
//! `connectors:` section of the `--config` file (which also holds `bootstrap_servers`, `registry_url`, ...).
//! Prints one line per account and pass on stdout; pages are logged on stderr.

use std::future::Future;
use std::path::Path;

use adstream_connectors::run::{run as run_connector, RunSettings};
use adstream_schemas::events::Platform;
use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use crate::config::{FileConfig, Settings};

/// `adstream connect ...`.
#[derive(Subcommand)]
pub enum ConnectCommand {
    /// Sync one platform's reports into `platform.reports`, exactly once, resuming from the committed cursors;
    /// passes every `poll_interval_secs` until SIGTERM/SIGINT, or once with `--once`.
    Run(RunArgs),
}

/// Arguments of `connect run`.
#[derive(Args)]
pub struct RunArgs {
    /// The platform to sync.
    platform: PlatformArg,
    /// Do one sync pass over every account, then exit (non-zero if an account failed).
    #[arg(long)]
    once: bool,
}

/// The platforms with a connector.
#[derive(Clone, Copy, ValueEnum)]
enum PlatformArg {
    /// Google Ads (GAQL searchStream).
    GoogleAds,
    /// Meta Marketing API Insights.
    Meta,
    /// TikTok API for Business reporting.
    Tiktok,
    /// LinkedIn adAnalytics.
    Linkedin,
}

impl PlatformArg {
    fn platform(self) -> Platform {
        match self {
            PlatformArg::GoogleAds => Platform::GoogleAds,
            PlatformArg::Meta => Platform::Meta,
            PlatformArg::Tiktok => Platform::Tiktok,
            PlatformArg::Linkedin => Platform::Linkedin,
        }
    }
}

/// Runs the command until `shutdown` resolves or the pass ends (`--once`).
pub async fn run(
    settings: &Settings,
    config_path: Option<&Path>,
    command: ConnectCommand,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let ConnectCommand::Run(args) = command;
    let path =
        config_path.context("connect run needs --config FILE with a `connectors:` section")?;
    let config = FileConfig::load(path)?
        .connectors
        .with_context(|| format!("{}: no `connectors:` section", path.display()))?;
    let platform = args.platform.platform();
    let slug = platform.slug();
    let run = RunSettings {
        kafka: settings.kafka_config(),
        registry: settings.registry.clone(),
        once: args.once,
    };
    run_connector(
        platform,
        &config,
        run,
        |summary| match summary.days {
            Some((from, to)) => println!(
                "{slug} account {}: {} campaigns, {} creatives; {from}..{to}{}: {} pages, {} rows, {} dead letters",
                summary.account,
                summary.campaigns,
                summary.creatives,
                if summary.resumed { " (resumed)" } else { "" },
                summary.pages,
                summary.rows,
                summary.dead_letters
            ),
            None => println!(
                "{slug} account {}: {} campaigns, {} creatives; no report days to sync yet",
                summary.account, summary.campaigns, summary.creatives
            ),
        },
        shutdown,
    )
    .await
    .with_context(|| format!("connector {slug}"))
}
