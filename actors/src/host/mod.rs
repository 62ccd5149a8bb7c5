//! The host voltd runs on: metrics and processes from `/proc`, the
//! monitoring actor, the clock format, downloads, filesystem helpers.

pub mod clock;
pub mod download;
pub mod fsutil;
pub mod metrics;
pub mod monitoring;
pub mod proc;
