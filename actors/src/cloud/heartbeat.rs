//! The heartbeat actor: `runtime.heartbeat` right after each registration,
//! then every interval, the next beat scheduled only after the previous one
//! completed (a slow server is never sent overlapping beats). The round trip
//! becomes the next beat's `cloudLatencyMs`.
//!
//! Heartbeats pause while the status machine says the environment is being
//! prepared (a heartbeat would make the server show `connected`). A 401
//! answer means the server no longer accepts the daemon password: the daemon
//! ends with the credentials-rejected exit code.

use crate::api::vocab::heartbeats_allowed;
use crate::api::{CommandError, CredentialsCell, Handle, Outbox, SendCommand};
use crate::config::Settings;
use crate::events::{Delivery, Event, EventBus};
use crate::host::monitoring::Sample;
use actix::prelude::*;
use otp::supervisor::StopChild;
use otp::{ExitCode, ExitReason, ExitSlot};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use volt_protocol::heartbeat::{HEARTBEAT_COMMAND, HeartbeatPayload};
use volt_protocol::{ClusterStatus, ErrorCode};

/// The heartbeat actor (see the module docs).
pub struct Heartbeat {
    settings: Arc<Settings>,
    outbox: Outbox,
    credentials: CredentialsCell,
    monitoring: Handle<Sample>,
    bus: EventBus,
    exit: ExitSlot,
    registered: bool,
    allowed: bool,
    in_flight: bool,
    next: Option<SpawnHandle>,
    last_latency_ms: Option<f64>,
    /// Bumped on every registration/disconnect so stale completions do not
    /// schedule beats for a connection that is gone.
    epoch: u64,
}

impl Heartbeat {
    /// Beats through `outbox` with `credentials`; metrics come from
    /// `monitoring` (a beat carries none while it is not running).
    pub fn new(
        settings: Arc<Settings>,
        outbox: Outbox,
        credentials: CredentialsCell,
        monitoring: Handle<Sample>,
        bus: EventBus,
        exit: ExitSlot,
    ) -> Self {
        Heartbeat {
            settings,
            outbox,
            credentials,
            monitoring,
            bus,
            exit,
            registered: false,
            allowed: true,
            in_flight: false,
            next: None,
            last_latency_ms: None,
            epoch: 0,
        }
    }

    fn cancel_next(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.next.take() {
            ctx.cancel_future(h);
        }
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        self.next = None;
        if !self.registered || !self.allowed || self.in_flight {
            return;
        }
        let Some(creds) = self.credentials.get() else {
            return;
        };
        let outbox = self.outbox.clone();
        self.in_flight = true;
        let epoch = self.epoch;
        let monitoring = self.monitoring.clone();
        let latency = self.last_latency_ms;
        let installed_version = self.settings.installed_version.to_string();
        let timeout = self.settings.socket.command_timeout;
        ctx.spawn(
            async move {
                let metrics = monitoring
                    .send(Sample {
                        cloud_latency_ms: latency,
                        connected_to_cloud: true,
                    })
                    .await
                    .ok()
                    .flatten();
                let payload = HeartbeatPayload {
                    team_cluster_id: creds.team_cluster_id,
                    daemon_password: creds.daemon_password,
                    installed_version: Some(installed_version),
                    runtime: None,
                    metrics,
                };
                let payload = serde_json::to_value(&payload)
                    .map_err(|e| CommandError::EmitFailed(e.to_string()))?;
                let started = Instant::now();
                let result = outbox
                    .command(SendCommand::new(HEARTBEAT_COMMAND, payload).timeout(timeout))
                    .await;
                let rtt = started.elapsed();
                result.map(|v| (v, rtt))
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                act.in_flight = false;
                match result {
                    Ok((value, rtt)) => {
                        let latency_ms = (rtt.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
                        act.last_latency_ms = Some(latency_ms);
                        let server_status = value
                            .pointer("/teamCluster/status")
                            .and_then(|s| s.as_str())
                            .and_then(|s| s.parse::<ClusterStatus>().ok());
                        act.bus.emit(Event::HeartbeatOk {
                            latency_ms,
                            server_status,
                        });
                    }
                    Err(CommandError::Rejected {
                        status: 401,
                        message,
                        ..
                    }) => {
                        act.bus.emit(Event::HeartbeatFailed {
                            code: ErrorCode::CommandRejected,
                            message: message.clone(),
                        });
                        act.exit.set(ExitReason::fatal(
                            ExitCode::CredentialsRejected,
                            format!("heartbeat rejected: {message}"),
                        ));
                        ctx.stop();
                        return;
                    }
                    Err(e) => {
                        act.bus.emit(Event::HeartbeatFailed {
                            code: e.code(),
                            message: e.to_string(),
                        });
                    }
                }
                if act.epoch == epoch {
                    act.schedule(act.settings.heartbeat_interval, ctx);
                }
            }),
        );
    }

    fn schedule(&mut self, after: Duration, ctx: &mut Context<Self>) {
        self.cancel_next(ctx);
        if self.registered && self.allowed {
            self.next = Some(ctx.run_later(after, |act, ctx| act.beat(ctx)));
        }
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context<Self>) {
        match event {
            Event::Registered { .. } => {
                self.registered = true;
                self.epoch += 1;
                self.in_flight = false;
                self.cancel_next(ctx);
                self.beat(ctx);
            }
            Event::SocketDisconnected { .. } => {
                self.registered = false;
                self.epoch += 1;
                self.in_flight = false;
                self.cancel_next(ctx);
            }
            Event::StatusChanged { to, .. } => {
                let allowed = heartbeats_allowed(*to);
                let reopened = allowed && !self.allowed;
                self.allowed = allowed;
                if !allowed {
                    self.cancel_next(ctx);
                } else if reopened {
                    self.beat(ctx);
                }
            }
            _ => {}
        }
    }
}

impl Actor for Heartbeat {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.add_stream(self.bus.subscribe_control());
        // Catch up: the registration may have happened before this actor
        // (re)started.
        let mut registered = false;
        let mut allowed = true;
        for r in self.bus.recent(usize::MAX) {
            match &r.event {
                Event::Registered { .. } => registered = true,
                Event::SocketDisconnected { .. } => registered = false,
                Event::StatusChanged { to, .. } => allowed = heartbeats_allowed(*to),
                _ => {}
            }
        }
        self.allowed = allowed;
        if registered {
            self.on_event(
                &Event::Registered {
                    cluster_id: String::new(),
                    connection: 0,
                    extensions: Default::default(),
                },
                ctx,
            );
        }
    }
}

impl StreamHandler<Delivery> for Heartbeat {
    fn handle(&mut self, item: Delivery, ctx: &mut Self::Context) {
        if let Delivery::Record(r) = item {
            self.on_event(&r.event, ctx);
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl Handler<StopChild> for Heartbeat {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Self::Context) {
        self.exit.set(ExitReason::Shutdown);
        ctx.stop();
    }
}
