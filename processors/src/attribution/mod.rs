//! Multi-touch attribution: the pure models and the two-stage job that applies them to live traffic.
//!
//! - `models`      — rule models (last touch, first touch, linear, time decay, position based) per journey and over
//!   path datasets; Shapley value and first-order Markov removal effects over path datasets. Pure: backtests call
//!   them.
//! - `dataset`     — path datasets as text (ChannelAttribution's path-data CSV) read into the models' input, with
//!   errors naming the line.
//! - `repartition` — stage one of the job: impressions and clicks re-keyed by user into an internal topic.
//! - `job`         — the job's settings, ports and constructor for the job registry.
//! - `operator`    — stage two: each user's touches in a store with expiry; every conversion credited under every
//!   rule model once its touches are known, and under Markov and Shapley with the latest fitted weights; each closed
//!   journey (converted, or not within the lookback) written to `attribution.journeys`.
//! - `touch_codec` — the compact changelog encoding of a user's touches, most of the job's state.
//! - `weights`     — the data-driven models on the stream: Markov removal effects and Shapley values fitted over a
//!   period's journeys (`adstream attribution fit`), and the latest fit turned into shares of a conversion.

pub mod dataset;
pub mod job;
pub mod models;
pub mod operator;
pub mod repartition;
pub mod touch_codec;
pub mod weights;
