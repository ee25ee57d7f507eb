//! The live API over the processors' compacted outputs: `adstream api serve`.
//!
//! The outputs (campaign metrics, alerts, creative fatigue, attribution credits) and the campaigns table are read
//! `read_committed` from their topics into memory ([`materialise`]) and kept current; the server reports ready
//! (`/readyz`) only once every partition was read to its end once. Over them:
//!
//! - GraphQL ([`graphql`]) at `/graphql`: queries, and subscriptions over the `graphql-transport-ws` protocol at
//!   `/graphql/ws` (`campaignMetricsUpdated`, `alertChanged`, `creativeFatigueChanged`);
//! - the same three streams as Server-Sent Events at `/events/...` ([`server`]);
//! - a live dashboard at `/`, static files embedded in the binary ([`dashboard`]).
//!
//! Every change reaches subscribers through one bounded broadcast ring ([`store::Hub`]): a client that falls more
//! than [`ApiLimits::client_buffer`] updates behind is told so and dropped, and a socket that does not take a
//! message within [`ApiLimits::send_timeout`] is closed, so a slow client never makes the server hold more.
//!
//! - `settings`    — what the server serves and its limits.
//! - `model`       — the types queries and streams return (GraphQL objects, JSON for SSE).
//! - `store`       — the in-memory tables and the change hub.
//! - `materialise` — the consumer that fills them.
//! - `graphql`     — the schema: queries, subscriptions, depth/complexity limits, subscriptions per connection.
//! - `server`      — axum: auth, CORS, GraphQL over HTTP and WebSocket, SSE, health, the dashboard.
//! - `dashboard`   — the embedded page.

pub mod dashboard;
pub mod graphql;
pub mod materialise;
pub mod model;
pub mod server;
pub mod settings;
pub mod store;

pub use server::{serve, ApiError};
pub use settings::{ApiLimits, ApiSettings, SourceKind, Sources};
