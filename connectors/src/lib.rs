//! adstream's platform connectors: what Google Ads, Meta, TikTok and LinkedIn report about an advertiser's ads,
//! read from their reporting APIs and written into Kafka as normalised `PlatformReport` rows, exactly once and
//! resumable.
//!
//! Layout:
//! - [`config`]  — the `connectors:` section of `connectors.yaml`: topics, HTTP limits, one block per platform
//!   (accounts with their time zone and currency, dates, restatement look-back, credentials).
//! - [`auth`]    — credentials from a file or the environment, never shown ([`auth::Secret`] redacts its Debug);
//!   OAuth refresh-token exchange where the platform has one, re-reading the credentials where it has not.
//! - [`http`]    — the HTTP client every source shares: timeouts, bounded bodies, exponential backoff with jitter on
//!   429/5xx and the platforms' throttling signals, `Retry-After`, one token renewal on an expired token.
//! - [`source`]  — the source abstraction (fetch one page of one account's day → normalised rows, malformed rows
//!   and the next page's token) and the number parsing every platform needs.
//! - [`entities`] — entity sync: the platforms' campaigns (status, budgets, schedule) into `ads.campaigns`.
//! - [`google_ads`], [`meta`], [`tiktok`], [`linkedin`] — one source per platform, each written against the
//!   platform's documented request and response shapes; only the base URL changes for tests.
//! - [`sink`]    — the transactional Kafka writer: a page's rows, its dead letters and the account's cursor in one
//!   transaction (Kafka Connect's exactly-once source design, KIP-618), and the cursors read back at start.
//! - [`run`]     — `adstream connect run`: builds one platform's source and sink from the config, passes until
//!   stopped (or once).
//! - [`sync`]    — the sync loop: per account, resume from the committed cursor, re-read the restatement look-back,
//!   page through the days, commit page by page.
//!
//! The schemas (`PlatformReport`, `ConnectorCursor`) are in `adstream_schemas::platform`; the topics in
//! `topology/adstream.yaml`. This crate does not depend on the producers or processors crates.

pub mod auth;
pub mod config;
pub mod entities;
pub mod google_ads;
pub mod http;
pub mod linkedin;
pub mod meta;
pub mod run;
pub mod sink;
pub mod source;
pub mod sync;
pub mod tiktok;
