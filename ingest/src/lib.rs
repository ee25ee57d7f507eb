//! `adstream ingest serve`: first-party events (a site's server-side conversions, its own clicks and impressions)
//! into Kafka over HTTP, as CloudEvents.
//!
//! Layout, in the order a request goes through it:
//!
//! - [`cloudevents`]: the CloudEvents HTTP protocol binding 1.0 — binary mode (`ce-*` headers, the event's data as
//!   the body), structured mode (`application/cloudevents+json`) and batch mode
//!   (`application/cloudevents-batch+json`) — read into [`cloudevents::ReceivedEvent`]s, or refused with the
//!   attribute at fault.
//! - [`decode`]: each event's `type` picks its contract record (`io.adstream.ad.impression.v1` → `AdImpression`,
//!   …); its JSON data becomes that record, checked field by field (unknown fields refused, the path of the first
//!   bad field reported) and by the same rules the producers' builders apply.
//! - [`recent`]: the ids accepted within the idempotency window, so a client that retries (or a pixel that fires
//!   twice) is acknowledged without a second record.
//! - [`server`]: the axum server — bearer token, body and batch limits, bounded concurrency, the Kafka producer
//!   (idempotent, `acks=all`), and `202 Accepted` only once the broker acknowledged every record of the request.
//! - [`settings`]: what the server listens on and the limits it holds every client to.
//!
//! A request's events are checked before anything is produced: one bad event refuses the whole request with `400`
//! and every bad event's reason, so a batch is never half taken.

pub mod cloudevents;
pub mod decode;
pub mod recent;
pub mod server;
pub mod settings;

pub use server::{IngestError, IngestServer};
pub use settings::{IngestLimits, IngestSettings};
