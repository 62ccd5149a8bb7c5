//! The host voltd runs on: metrics from `/proc`, the monitoring actor,
//! filesystem helpers.

pub mod clock;
pub mod fsutil;
pub mod metrics;
pub mod monitoring;
pub mod proc;
