//! The `voltd` binary's library part: command line (and its configuration flags), logging.
//! The daemon itself is the actor system in the `voltd-actors` crate.
#![forbid(unsafe_code)]

pub mod cli;
pub mod flags;
pub mod logging;
pub mod provision_cmd;
pub mod standins;
