//! What `adstream api serve` serves and the limits it holds every client to.

use std::net::SocketAddr;
use std::time::Duration;

use adstream_kafka::registry_client::RegistrySettings;
use adstream_schemas::events::{AvroRecord, Campaign};
use adstream_schemas::outputs::{
    AttributionCredit, CampaignAlert, CampaignMetrics, CreativeAlert, CreativeFatigue,
};
use adstream_topology::Topology;
use rdkafka::ClientConfig;

/// What one source topic holds, by its value schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// `io.adstream.ads.Campaign`: campaign settings, latest per campaign.
    Campaigns,
    /// `io.adstream.metrics.CampaignMetrics`: hourly and daily rows, latest per (campaign, granularity, window).
    Metrics,
    /// `io.adstream.alerts.CampaignAlert`: every change of an alert's state.
    Alerts,
    /// `io.adstream.alerts.CreativeAlert`: every change of a creative's fatigue status, in the alert stream.
    CreativeAlerts,
    /// `io.adstream.fatigue.CreativeFatigue`: latest assessment per creative.
    Fatigue,
    /// `io.adstream.attribution.AttributionCredit`: every credit, summed per campaign and model.
    Credits,
}

impl SourceKind {
    /// The kind of topic whose values are `value_schema` (a full Avro name), if the API serves it.
    pub fn of_schema(value_schema: &str) -> Option<SourceKind> {
        [
            (Campaign::FULL_NAME, SourceKind::Campaigns),
            (CampaignMetrics::FULL_NAME, SourceKind::Metrics),
            (CampaignAlert::FULL_NAME, SourceKind::Alerts),
            (CreativeAlert::FULL_NAME, SourceKind::CreativeAlerts),
            (CreativeFatigue::FULL_NAME, SourceKind::Fatigue),
            (AttributionCredit::FULL_NAME, SourceKind::Credits),
        ]
        .into_iter()
        .find_map(|(name, kind)| (name == value_schema).then_some(kind))
    }
}

/// The topics the API materialises.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sources {
    /// Each topic with what it holds.
    pub topics: Vec<(String, SourceKind)>,
}

impl Sources {
    /// Every topic of `topology` whose value schema the API serves: both metrics topics (hourly and daily rows
    /// carry their granularity), the campaign and creative alerts, fatigue and credits topics and the campaigns
    /// table.
    pub fn from_topology(topology: &Topology) -> Sources {
        let topics = topology
            .value_schemas()
            .filter_map(|(topic, schema)| {
                SourceKind::of_schema(schema).map(|kind| (topic.name.clone(), kind))
            })
            .collect();
        Sources { topics }
    }
}

/// Limits on what one client may make the server hold or do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Deepest nesting of fields a GraphQL operation may have; deeper ones are refused with a GraphQL error before
    /// they run. Default 8.
    pub max_depth: usize,
    /// Highest complexity (fields selected, each counted once per level) an operation may have. Default 1000.
    pub max_complexity: usize,
    /// Subscriptions one WebSocket connection may hold at once; one more is answered with a GraphQL error. Default
    /// 16.
    pub max_subscriptions_per_connection: usize,
    /// Streaming connections (GraphQL WebSockets and SSE streams) served at once; more are refused with 503.
    /// Default 4096.
    pub max_streams: usize,
    /// How many updates a subscriber may fall behind the newest before it is dropped (the broadcast ring's length,
    /// shared by all subscribers, so memory is this many updates whatever the number of clients). Default 1024.
    pub client_buffer: usize,
    /// How long one message may take to be accepted by a client's socket before the connection is closed as too
    /// slow. Default 5 s.
    pub send_timeout: Duration,
    /// Largest GraphQL request body, in bytes. Default 64 KiB.
    pub max_body_bytes: usize,
    /// Alert changes kept in memory for `alertHistory` (the newest; older ones stay in Kafka). Default 10,000.
    pub alert_history: usize,
    /// Most rows one list query returns (`metrics`, `alertHistory`). Default 10,000.
    pub max_rows: usize,
}

impl Default for ApiLimits {
    fn default() -> ApiLimits {
        ApiLimits {
            max_depth: 8,
            max_complexity: 1000,
            max_subscriptions_per_connection: 16,
            max_streams: 4096,
            client_buffer: 1024,
            send_timeout: Duration::from_secs(5),
            max_body_bytes: 64 << 10,
            alert_history: 10_000,
            max_rows: 10_000,
        }
    }
}

/// Everything `adstream api serve` needs.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Address to listen on (port 0: any free port; [`crate::serve`] reports the bound one).
    pub listen: SocketAddr,
    /// Bearer tokens accepted (`Authorization: Bearer <token>`); at least one.
    pub tokens: Vec<String>,
    /// Origins a browser may call the API from (CORS); `*` allows any. Empty: same origin only (the embedded
    /// dashboard needs none).
    pub cors_origins: Vec<String>,
    /// Per-client limits.
    pub limits: ApiLimits,
    /// The topics served.
    pub sources: Sources,
    /// Base Kafka client config (bootstrap servers, pass-through properties).
    pub kafka: ClientConfig,
    /// The schema registry (URL, credentials, CA), for the writer schemas of the records read.
    pub registry: RegistrySettings,
}
