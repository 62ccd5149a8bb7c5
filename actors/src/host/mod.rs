//! The host voltd runs on: metrics from `/proc`, the monitoring actor,
//! filesystem helpers.

pub mod download;
pub mod fsutil;
pub mod metrics;
pub mod monitoring;
