//! The host voltd runs on: metrics and processes from `/proc`, the
//! monitoring actor, the clock format, downloads, filesystem helpers, the
//! network-change watch, starting programs that were just written.

pub mod clock;
pub mod download;
pub mod fsutil;
pub mod keystore;
pub mod metrics;
pub mod monitoring;
pub mod netwatch;
pub mod notify;
pub mod proc;
pub mod spawn;
pub mod which;
