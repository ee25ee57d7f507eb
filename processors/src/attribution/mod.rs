//! Multi-touch attribution: which touches of a user's journey (or which channels of a path dataset) earn a
//! conversion, and how much of it.
//!
//! - `models` — the attribution maths: rule models (last touch, first touch, linear, time decay, position based)
//!   per journey and over path datasets, Shapley value and first-order Markov removal effects over path
//!   datasets. Pure.

pub mod models;
