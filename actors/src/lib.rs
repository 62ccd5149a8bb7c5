//! voltd's actor system.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod events;
pub mod exit;
pub mod supervisor;
