//! The monitoring actor: owns the host sampler and answers [`Sample`]
//! requests (one per heartbeat). Sampling on demand keeps the daemon idle
//! between heartbeats; rates are computed over the time since the previous
//! sample, so with 10 s heartbeats they are 10 s averages.
//!
//! A sample reads `/proc` and calls `statvfs` on the disk path — blocking
//! calls that can hang on a dead network mount — so it runs on the
//! blocking pool, never on the actor thread that answers the server's pings.

use crate::api::Handle;
use crate::host::metrics::HostSampler;
use actix::prelude::*;
use otp::supervisor::StopChild;
use otp::{ExitReason, ExitSlot};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use volt_protocol::heartbeat::Metrics;

/// Take a metrics snapshot now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Option<Metrics>")]
pub struct Sample {
    /// Round trip of the previous heartbeat.
    pub cloud_latency_ms: Option<f64>,
    pub connected_to_cloud: bool,
}

/// The monitoring actor.
pub struct Monitoring {
    sampler: Arc<Mutex<HostSampler>>,
    handle: Handle<Sample>,
    exit: ExitSlot,
}

impl Monitoring {
    /// Samples the host (disk usage of `disk_path`); binds itself to `handle`.
    pub fn new(disk_path: PathBuf, handle: Handle<Sample>, exit: ExitSlot) -> Self {
        Monitoring {
            sampler: Arc::new(Mutex::new(HostSampler::new(disk_path))),
            handle,
            exit,
        }
    }
}

/// One sample on the blocking pool; `None` when the sampler is gone.
async fn sample(
    sampler: Arc<Mutex<HostSampler>>,
    cloud_latency_ms: Option<f64>,
    connected_to_cloud: bool,
) -> Option<Metrics> {
    tokio::task::spawn_blocking(move || {
        // A poisoned lock means an earlier sample panicked; its counters
        // are still usable.
        let mut s = sampler.lock().unwrap_or_else(|p| p.into_inner());
        s.sample(cloud_latency_ms, connected_to_cloud)
    })
    .await
    .ok()
}

impl Actor for Monitoring {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.handle.bind(ctx.address());
        // Prime the counters so the first heartbeat's rates cover the time
        // since start-up rather than being zero.
        let sampler = self.sampler.clone();
        actix_rt::spawn(async move {
            let _ = sample(sampler, None, false).await;
        });
    }
}

impl Handler<Sample> for Monitoring {
    type Result = ResponseFuture<Option<Metrics>>;
    fn handle(&mut self, msg: Sample, _ctx: &mut Self::Context) -> Self::Result {
        Box::pin(sample(
            self.sampler.clone(),
            msg.cloud_latency_ms,
            msg.connected_to_cloud,
        ))
    }
}

impl Handler<StopChild> for Monitoring {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Self::Context) {
        self.exit.set(ExitReason::Shutdown);
        ctx.stop();
    }
}
