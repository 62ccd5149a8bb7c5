//! The monitoring actor: owns the host sampler and answers [`Sample`]
//! requests (one per heartbeat). Sampling on demand keeps the daemon idle
//! between heartbeats; rates are computed over the time since the previous
//! sample, so with 10 s heartbeats they are 10 s averages.

use crate::exit::{ExitReason, ExitSlot};
use crate::host::metrics::HostSampler;
use crate::supervisor::StopChild;
use actix::prelude::*;
use std::path::PathBuf;
use volt_protocol::heartbeat::Metrics;

/// Take a metrics snapshot now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Metrics")]
pub struct Sample {
    /// Round trip of the previous heartbeat.
    pub cloud_latency_ms: Option<f64>,
    pub connected_to_cloud: bool,
}

/// The monitoring actor.
pub struct Monitoring {
    sampler: HostSampler,
    exit: ExitSlot,
}

impl Monitoring {
    pub fn new(disk_path: PathBuf, exit: ExitSlot) -> Self {
        Monitoring {
            sampler: HostSampler::new(disk_path),
            exit,
        }
    }
}

impl Actor for Monitoring {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        // Prime the counters so the first heartbeat's rates cover the time
        // since start-up rather than being zero.
        let _ = self.sampler.sample(None, false);
    }
}

impl Handler<Sample> for Monitoring {
    type Result = MessageResult<Sample>;
    fn handle(&mut self, msg: Sample, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.sampler
                .sample(msg.cloud_latency_ms, msg.connected_to_cloud),
        )
    }
}

impl Handler<StopChild> for Monitoring {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Self::Context) {
        self.exit.set(ExitReason::Shutdown);
        ctx.stop();
    }
}
