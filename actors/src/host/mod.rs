//! The host voltd runs on: metrics from `/proc`, the monitoring actor,
//! filesystem helpers.

pub mod fsutil;
pub mod keystore;
pub mod metrics;
pub mod monitoring;
pub mod notify;
