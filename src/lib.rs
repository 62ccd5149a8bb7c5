//! The `voltd` binary's library part: configuration, command line, logging.
//! The daemon itself is the actor system in the `voltd-actors` crate.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod logging;
pub mod provision_cmd;
pub mod service_config;
pub mod standins;
