//! The host voltd runs on: metrics and processes from `/proc`, the
//! monitoring actor, the clock format, downloads, filesystem helpers, the
//! network-change watch, the allocator's arena limit, starting programs
//! that were just written.

pub mod clock;
pub mod download;
pub mod fsutil;
pub mod keystore;
pub mod malloc;
pub mod metrics;
pub mod monitoring;
pub mod netwatch;
pub mod notify;
pub mod proc;
pub mod spawn;
pub mod which;
