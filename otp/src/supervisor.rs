//! The supervisor: Erlang/OTP supervision semantics as an actix actor.
//!
//! actix's own `Supervisor` only restarts an actor that stopped itself; it
//! catches no panics and has no limits or delays. This one:
//!
//! * starts children in declared order and stops them in reverse, each with a
//!   shutdown timeout after which its task is aborted;
//! * restarts per child policy ([`Restart`]: permanent, transient, temporary)
//!   with a strategy ([`Strategy`]: one_for_one, rest_for_one);
//! * limits restart intensity (more than N restarts within T → give up and
//!   escalate to the parent, or at the root to a process exit code);
//! * waits an exponential, jittered delay before each restart;
//! * turns a panic in a child into an [`ExitReason::Panicked`] — every child
//!   runs as its own task, so a panic ends that task, never the process;
//! * reports everything as [`SupervisorEvent`]s to an [`Observer`] (voltd
//!   puts them on its supervisor log stream).
//!
//! Supervisors nest: [`SupervisorSpec::into_child`] makes one a child of
//! another.

use crate::backoff::ExponentialBackoff;
use crate::exit::{ExitCode, ExitReason, ExitSlot, panic_message};
use crate::policy::{Decision, Intensity, RestartPolicy};
use actix::prelude::*;
use serde::Serialize;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

/// When a child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always (a long-running piece that must be up).
    Permanent,
    /// Only after an abnormal exit (a job that may finish, e.g. enrollment).
    Transient,
    /// Never.
    Temporary,
}

/// Which children a restart takes along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Restart only the child that ended.
    OneForOne,
    /// Restart the child that ended and every child started after it.
    RestForOne,
}

/// OTP's default intensity is 1 in 5 s; a host agent whose children include
/// network clients sees bursts of legitimate failures (a server restart drops
/// every connection at once), so it tolerates 5 restarts per minute.
pub const DEFAULT_MAX_RESTARTS: u32 = 5;
/// See [`DEFAULT_MAX_RESTARTS`].
pub const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(60);
/// First restart delay: long enough to not hot-loop, short enough to be
/// invisible to an operator.
pub const DEFAULT_RESTART_BASE: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const DEFAULT_RESTART_MAX: Duration = Duration::from_secs(10);
/// How long a child gets to stop before its task is aborted.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Something a supervisor did, for the embedding application's log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum SupervisorEvent {
    /// A child started (or restarted: `restarts` > 0).
    ChildStarted {
        supervisor: String,
        child: String,
        restarts: u32,
    },
    /// A child ended.
    ChildExited {
        supervisor: String,
        child: String,
        reason: ExitReason,
    },
    /// A child will be restarted after `delay_ms`.
    ChildRestarting {
        supervisor: String,
        child: String,
        delay_ms: u64,
        restarts: u32,
    },
    /// Restart intensity exceeded: the supervisor gives up and escalates.
    ChildGaveUp {
        supervisor: String,
        child: String,
        restarts: u32,
        window_secs: u64,
    },
    /// A child did not stop within its shutdown timeout and was aborted.
    ChildKilled { supervisor: String, child: String },
    /// The root supervisor ends the process with `code`.
    Escalated {
        supervisor: String,
        code: ExitCode,
        reason: String,
    },
    /// An orderly shutdown of the tree began.
    ShutdownStarted { reason: String },
}

/// Where supervisors report their [`SupervisorEvent`]s.
pub type Observer = Rc<dyn Fn(SupervisorEvent)>;

/// What a child start function gets.
#[derive(Clone)]
pub struct ChildEnv {
    /// The child's name (for logs).
    pub name: String,
    /// Where the child records why it stopped.
    pub exit: ExitSlot,
    /// The tree's observer (nested supervisors report to it too).
    pub observer: Observer,
}

/// A started child: its task and how to ask it to stop.
pub struct RunningChild {
    task: JoinHandle<()>,
    stop: Box<dyn FnOnce()>,
}

impl RunningChild {
    pub fn new(task: JoinHandle<()>, stop: impl FnOnce() + 'static) -> Self {
        RunningChild {
            task,
            stop: Box::new(stop),
        }
    }
}

/// The message every supervised actor handles: stop cleanly, now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopChild;

/// Runs `actor` as its own task and returns its address and handle. A panic
/// in any of its handlers ends only that task; the supervisor sees it.
pub fn spawn_actor<A>(actor: A) -> (Addr<A>, RunningChild)
where
    A: Actor<Context = Context<A>> + Handler<StopChild>,
{
    let ctx = Context::new();
    let addr = ctx.address();
    let task = actix_rt::spawn(ctx.into_future(actor));
    let stop_addr = addr.clone();
    (
        addr,
        RunningChild::new(task, move || stop_addr.do_send(StopChild)),
    )
}

type StartFn = Rc<dyn Fn(&ChildEnv) -> Result<RunningChild, String>>;

/// One child of a supervisor.
#[derive(Clone)]
pub struct ChildSpec {
    pub name: String,
    pub restart: Restart,
    pub shutdown_timeout: Duration,
    start: StartFn,
}

impl ChildSpec {
    pub fn new(
        name: impl Into<String>,
        restart: Restart,
        start: impl Fn(&ChildEnv) -> Result<RunningChild, String> + 'static,
    ) -> Self {
        ChildSpec {
            name: name.into(),
            restart,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            start: Rc::new(start),
        }
    }

    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
}

/// A supervisor's configuration.
#[derive(Clone)]
pub struct SupervisorSpec {
    pub name: String,
    pub strategy: Strategy,
    pub intensity: Intensity,
    pub restart_backoff: ExponentialBackoff,
    pub children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// A supervisor with the default intensity and restart delays.
    pub fn new(name: impl Into<String>, strategy: Strategy) -> Self {
        SupervisorSpec {
            name: name.into(),
            strategy,
            // Both constants are valid (non-zero window; base ≤ max, factor 2,
            // jitter 0.2), so these constructors cannot fail.
            intensity: default_intensity(),
            restart_backoff: default_restart_backoff(),
            children: Vec::new(),
        }
    }

    pub fn intensity(mut self, intensity: Intensity) -> Self {
        self.intensity = intensity;
        self
    }

    pub fn restart_backoff(mut self, backoff: ExponentialBackoff) -> Self {
        self.restart_backoff = backoff;
        self
    }

    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(child);
        self
    }

    /// Starts this as the root supervisor. The receiver yields the process
    /// exit code when the tree ends (shutdown, fatal child, or giving up).
    pub fn start_root(self, observer: Observer) -> (Addr<Supervisor>, oneshot::Receiver<ExitCode>) {
        let (tx, rx) = oneshot::channel();
        let sup = Supervisor::new(self, observer, ExitSlot::new(), Some(tx));
        (sup.start(), rx)
    }

    /// Makes this supervisor a child of another (a subtree).
    pub fn into_child(self, restart: Restart) -> ChildSpec {
        let name = self.name.clone();
        let timeout = DEFAULT_SHUTDOWN_TIMEOUT * (self.children.len() as u32 + 1);
        ChildSpec::new(name, restart, move |env| {
            let sup = Supervisor::new(self.clone(), env.observer.clone(), env.exit.clone(), None);
            let (_, running) = spawn_actor(sup);
            Ok(running)
        })
        .shutdown_timeout(timeout)
    }
}

/// [`DEFAULT_MAX_RESTARTS`] in [`DEFAULT_RESTART_WINDOW`].
pub fn default_intensity() -> Intensity {
    match Intensity::try_new(DEFAULT_MAX_RESTARTS, DEFAULT_RESTART_WINDOW) {
        Ok(i) => i,
        Err(e) => unreachable!("the default restart window is non-zero: {e}"),
    }
}

fn default_restart_backoff() -> ExponentialBackoff {
    ExponentialBackoff::try_new(DEFAULT_RESTART_BASE, DEFAULT_RESTART_MAX, 2.0, 0.2)
        .unwrap_or_else(|_| unreachable_backoff())
}

#[cold]
fn unreachable_backoff() -> ExponentialBackoff {
    // Only reachable if the constants above were edited into an invalid
    // combination; a 1 s fixed delay is a safe fallback.
    match ExponentialBackoff::try_new(Duration::from_secs(1), Duration::from_secs(1), 1.0, 0.0) {
        Ok(b) => b,
        Err(_) => unreachable!("1s/1s/1.0/0.0 is a valid backoff"),
    }
}

struct Running {
    generation: u64,
    abort: AbortHandle,
    stop: Option<Box<dyn FnOnce()>>,
    ended: Rc<Cell<bool>>,
    notify: Rc<Notify>,
    exit: ExitSlot,
}

struct ChildState {
    spec: ChildSpec,
    running: Option<Running>,
    generation: u64,
    restarts: u32,
    /// Set while the supervisor itself stops this child (no restart then).
    stopping: bool,
    pending_restart: Option<SpawnHandle>,
}

/// The supervisor actor (see the module docs).
pub struct Supervisor {
    name: String,
    strategy: Strategy,
    policy: RestartPolicy,
    children: Vec<ChildState>,
    observer: Observer,
    exit: ExitSlot,
    on_exit: Option<oneshot::Sender<ExitCode>>,
    shutting_down: bool,
    /// A restart_for_one cycle in progress (ignore overlapping triggers).
    restarting: bool,
}

/// Ask a supervisor to stop its tree and end with `code`.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub code: ExitCode,
    /// Why (for the log).
    pub reason: &'static str,
}

impl Supervisor {
    fn new(
        spec: SupervisorSpec,
        observer: Observer,
        exit: ExitSlot,
        on_exit: Option<oneshot::Sender<ExitCode>>,
    ) -> Self {
        Supervisor {
            name: spec.name,
            strategy: spec.strategy,
            policy: RestartPolicy::new(spec.intensity, spec.restart_backoff),
            children: spec
                .children
                .into_iter()
                .map(|spec| ChildState {
                    spec,
                    running: None,
                    generation: 0,
                    restarts: 0,
                    stopping: false,
                    pending_restart: None,
                })
                .collect(),
            observer,
            exit,
            on_exit,
            shutting_down: false,
            restarting: false,
        }
    }

    fn start_child(&mut self, idx: usize, ctx: &mut Context<Self>) {
        let child = &mut self.children[idx];
        child.pending_restart = None;
        child.stopping = false;
        child.generation += 1;
        let generation = child.generation;
        let env = ChildEnv {
            name: child.spec.name.clone(),
            exit: ExitSlot::new(),
            observer: self.observer.clone(),
        };
        let started =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (child.spec.start)(&env)));
        let started = match started {
            Ok(r) => r,
            Err(p) => Err(format!("start panicked: {}", panic_message(p.as_ref()))),
        };
        match started {
            Ok(running) => {
                let ended = Rc::new(Cell::new(false));
                let notify = Rc::new(Notify::new());
                child.running = Some(Running {
                    generation,
                    abort: running.task.abort_handle(),
                    stop: Some(running.stop),
                    ended: ended.clone(),
                    notify: notify.clone(),
                    exit: env.exit.clone(),
                });
                (self.observer)(SupervisorEvent::ChildStarted {
                    supervisor: self.name.clone(),
                    child: env.name.clone(),
                    restarts: child.restarts,
                });
                let task = running.task;
                ctx.spawn(
                    async move {
                        let result = task.await;
                        ended.set(true);
                        notify.notify_waiters();
                        result
                    }
                    .into_actor(self)
                    .map(move |result, act, ctx| {
                        let reason = match result {
                            Ok(()) => None,
                            Err(e) if e.is_panic() => Some(ExitReason::Panicked {
                                message: panic_message(e.into_panic().as_ref()),
                            }),
                            Err(_) => Some(ExitReason::failed("task aborted")),
                        };
                        act.child_ended(idx, generation, reason, ctx);
                    }),
                );
            }
            Err(reason) => {
                (self.observer)(SupervisorEvent::ChildStarted {
                    supervisor: self.name.clone(),
                    child: env.name.clone(),
                    restarts: child.restarts,
                });
                child.running = None;
                let reason = ExitReason::failed(format!("failed to start: {reason}"));
                self.handle_exit(idx, reason, ctx);
            }
        }
    }

    fn child_ended(
        &mut self,
        idx: usize,
        generation: u64,
        task_reason: Option<ExitReason>,
        ctx: &mut Context<Self>,
    ) {
        let child = &mut self.children[idx];
        let Some(running) = child.running.take_if(|r| r.generation == generation) else {
            return; // a stale watcher of an earlier incarnation
        };
        let reason = match task_reason {
            Some(r) => r,
            None => running.exit.take(),
        };
        if child.stopping || self.shutting_down {
            child.stopping = false;
            let reason = if reason.is_abnormal() {
                reason
            } else {
                ExitReason::Shutdown
            };
            (self.observer)(SupervisorEvent::ChildExited {
                supervisor: self.name.clone(),
                child: child.spec.name.clone(),
                reason,
            });
            return;
        }
        self.handle_exit(idx, reason, ctx);
    }

    fn handle_exit(&mut self, idx: usize, reason: ExitReason, ctx: &mut Context<Self>) {
        let child = &self.children[idx];
        let name = child.spec.name.clone();
        (self.observer)(SupervisorEvent::ChildExited {
            supervisor: self.name.clone(),
            child: name.clone(),
            reason: reason.clone(),
        });
        if self.shutting_down {
            return;
        }
        if let ExitReason::Fatal { code, reason } = &reason {
            self.escalate(ExitReason::fatal(*code, format!("{name}: {reason}")), ctx);
            return;
        }
        let restart = match child.spec.restart {
            Restart::Permanent => true,
            Restart::Transient => reason.is_abnormal(),
            Restart::Temporary => false,
        };
        if !restart {
            return;
        }
        let delay = match self.policy.on_failure(Instant::now()) {
            Decision::RestartAfter { delay, .. } => delay,
            Decision::GiveUp { restarts, window } => {
                (self.observer)(SupervisorEvent::ChildGaveUp {
                    supervisor: self.name.clone(),
                    child: name.clone(),
                    restarts,
                    window_secs: window.as_secs(),
                });
                self.escalate(
                    ExitReason::failed(format!(
                        "{name} exceeded {restarts} restarts in {}s (last: {reason})",
                        window.as_secs()
                    )),
                    ctx,
                );
                return;
            }
        };
        let child = &mut self.children[idx];
        child.restarts += 1;
        (self.observer)(SupervisorEvent::ChildRestarting {
            supervisor: self.name.clone(),
            child: name,
            delay_ms: delay.as_millis() as u64,
            restarts: child.restarts,
        });
        match self.strategy {
            Strategy::OneForOne => {
                let handle = ctx.run_later(delay, move |act, ctx| {
                    if !act.shutting_down {
                        act.start_child(idx, ctx);
                    }
                });
                self.children[idx].pending_restart = Some(handle);
            }
            Strategy::RestForOne => {
                if self.restarting {
                    return;
                }
                self.restarting = true;
                let later: Vec<usize> = (idx + 1..self.children.len())
                    .filter(|&i| self.children[i].running.is_some())
                    .collect();
                let stops = self.stop_children_rev(&later, ctx);
                ctx.spawn(
                    async move {
                        stops.await;
                        tokio::time::sleep(delay).await;
                    }
                    .into_actor(self)
                    .map(move |(), act, ctx| {
                        act.restarting = false;
                        if act.shutting_down {
                            return;
                        }
                        act.start_child(idx, ctx);
                        for i in later {
                            if act.children[i].running.is_none() {
                                act.start_child(i, ctx);
                            }
                        }
                    }),
                );
            }
        }
    }

    /// Stops the given children in reverse order, each within its timeout.
    /// Pending restarts of those children are cancelled at once; the returned
    /// future resolves once every running one has ended or been aborted.
    fn stop_children_rev(
        &mut self,
        indices: &[usize],
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = ()> + 'static {
        let mut steps = Vec::new();
        for &i in indices.iter().rev() {
            let child = &mut self.children[i];
            if let Some(h) = child.pending_restart.take() {
                ctx.cancel_future(h);
            }
            if let Some(running) = child.running.as_mut() {
                child.stopping = true;
                steps.push(StopStep {
                    stop: running.stop.take(),
                    ended: running.ended.clone(),
                    notify: running.notify.clone(),
                    abort: running.abort.clone(),
                    timeout: child.spec.shutdown_timeout,
                    supervisor: self.name.clone(),
                    child: child.spec.name.clone(),
                    observer: self.observer.clone(),
                });
            }
        }
        async move {
            for step in steps {
                step.run().await;
            }
        }
    }

    fn escalate(&mut self, reason: ExitReason, ctx: &mut Context<Self>) {
        let code = match &reason {
            ExitReason::Fatal { code, .. } => *code,
            _ => ExitCode::Retryable,
        };
        if self.on_exit.is_some() {
            (self.observer)(SupervisorEvent::Escalated {
                supervisor: self.name.clone(),
                code,
                reason: reason.to_string(),
            });
        }
        self.exit.set(reason);
        self.shutdown(code, ctx);
    }

    fn shutdown(&mut self, code: ExitCode, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let all: Vec<usize> = (0..self.children.len()).collect();
        let stops = self.stop_children_rev(&all, ctx);
        ctx.spawn(stops.into_actor(self).map(move |(), act, ctx| {
            if let Some(tx) = act.on_exit.take() {
                let _ = tx.send(code);
            }
            ctx.stop();
        }));
    }
}

/// Stopping one child: ask, wait up to the timeout, abort if needed.
struct StopStep {
    stop: Option<Box<dyn FnOnce()>>,
    ended: Rc<Cell<bool>>,
    notify: Rc<Notify>,
    abort: AbortHandle,
    timeout: Duration,
    supervisor: String,
    child: String,
    observer: Observer,
}

impl StopStep {
    async fn run(self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Register interest before checking the flag so a wake-up between
        // the check and the await is not lost.
        notified.as_mut().enable();
        if self.ended.get() {
            return;
        }
        if let Some(stop) = self.stop {
            stop();
        }
        if tokio::time::timeout(self.timeout, notified).await.is_err() && !self.ended.get() {
            self.abort.abort();
            (self.observer)(SupervisorEvent::ChildKilled {
                supervisor: self.supervisor,
                child: self.child,
            });
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for idx in 0..self.children.len() {
            if self.shutting_down {
                break;
            }
            self.start_child(idx, ctx);
        }
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) {
        if self.on_exit.is_some() && !self.shutting_down {
            (self.observer)(SupervisorEvent::ShutdownStarted {
                reason: msg.reason.to_owned(),
            });
        }
        self.shutdown(msg.code, ctx);
    }
}

impl Handler<StopChild> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: StopChild, ctx: &mut Self::Context) {
        self.exit.set(ExitReason::Shutdown);
        self.shutdown(ExitCode::Stopped, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Collects what the supervisors report.
    #[derive(Clone, Default)]
    struct Recorder(Rc<RefCell<Vec<SupervisorEvent>>>);

    impl Recorder {
        fn observer(&self) -> Observer {
            let events = self.0.clone();
            Rc::new(move |e| events.borrow_mut().push(e))
        }
    }

    #[derive(Clone, Copy)]
    enum Behavior {
        FailOnStart,
        PanicOnStart,
        ExitNormally,
        Fatal(ExitCode),
        RunForever,
        IgnoreStop,
    }

    struct TestChild {
        exit: ExitSlot,
        behavior: Behavior,
        name: &'static str,
        log: Rc<RefCell<Vec<String>>>,
    }

    impl Actor for TestChild {
        type Context = Context<Self>;
        fn started(&mut self, ctx: &mut Context<Self>) {
            self.log.borrow_mut().push(format!("start {}", self.name));
            match self.behavior {
                Behavior::FailOnStart => {
                    self.exit.set(ExitReason::failed("broken on purpose"));
                    ctx.stop();
                }
                Behavior::PanicOnStart => panic!("boom in {}", self.name),
                Behavior::ExitNormally => ctx.stop(),
                Behavior::Fatal(code) => {
                    self.exit
                        .set(ExitReason::fatal(code, "credentials rejected"));
                    ctx.stop();
                }
                Behavior::RunForever | Behavior::IgnoreStop => {}
            }
        }
    }

    impl Handler<StopChild> for TestChild {
        type Result = ();
        fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
            self.log.borrow_mut().push(format!("stop {}", self.name));
            if !matches!(self.behavior, Behavior::IgnoreStop) {
                ctx.stop();
            }
        }
    }

    fn child(
        name: &'static str,
        restart: Restart,
        behavior: Behavior,
        log: &Rc<RefCell<Vec<String>>>,
    ) -> ChildSpec {
        let log = log.clone();
        let keep: Rc<RefCell<Vec<Addr<TestChild>>>> = Rc::default();
        ChildSpec::new(name, restart, move |env| {
            let (addr, running) = spawn_actor(TestChild {
                exit: env.exit.clone(),
                behavior,
                name,
                log: log.clone(),
            });
            // Like the daemon's peer directory: an address stays alive, so
            // the actor only stops when told to (actix stops actors whose
            // addresses are all gone).
            keep.borrow_mut().push(addr);
            Ok(running)
        })
    }

    fn no_jitter() -> ExponentialBackoff {
        ExponentialBackoff::try_new(
            Duration::from_millis(100),
            Duration::from_secs(10),
            2.0,
            0.0,
        )
        .unwrap()
    }

    fn events(bus: &Recorder) -> Vec<SupervisorEvent> {
        bus.0.borrow().clone()
    }

    fn names(bus: &Recorder) -> Vec<String> {
        events(bus)
            .iter()
            .map(|r| {
                let v = serde_json::to_value(r).unwrap();
                let child = v.get("child").and_then(|c| c.as_str()).unwrap_or("");
                format!("{} {child}", v["event"].as_str().unwrap())
                    .trim()
                    .to_owned()
            })
            .collect()
    }

    #[actix_rt::test]
    async fn failing_child_is_restarted_until_the_intensity_limit_then_exit_code_2() {
        tokio::time::pause();
        let bus = Recorder::default();
        let log = Rc::new(RefCell::new(Vec::new()));
        let spec = SupervisorSpec::new("root", Strategy::OneForOne)
            .intensity(Intensity::try_new(3, Duration::from_secs(10)).unwrap())
            .restart_backoff(no_jitter())
            .child(child("ok", Restart::Permanent, Behavior::RunForever, &log))
            .child(child(
                "bad",
                Restart::Permanent,
                Behavior::FailOnStart,
                &log,
            ));
        let (_addr, rx) = spec.start_root(bus.observer());
        let code = rx.await.unwrap();
        assert_eq!(code, ExitCode::Retryable);
        assert_eq!(code.code(), 2);

        let starts = log.borrow().iter().filter(|l| *l == "start bad").count();
        assert_eq!(starts, 4, "initial start + 3 restarts");
        let delays: Vec<u64> = events(&bus)
            .iter()
            .filter_map(|r| match r {
                SupervisorEvent::ChildRestarting { delay_ms, .. } => Some(*delay_ms),
                _ => None,
            })
            .collect();
        assert_eq!(delays, [100, 200, 400], "exponential restart delays");
        let n = names(&bus);
        assert!(n.contains(&"child-gave-up bad".to_owned()), "{n:?}");
        assert!(n.contains(&"escalated".to_owned()), "{n:?}");
        // The healthy sibling is stopped on the way out.
        assert!(log.borrow().contains(&"stop ok".to_owned()));
    }

    #[actix_rt::test]
    async fn restarts_outside_the_window_do_not_count() {
        tokio::time::pause();
        let bus = Recorder::default();
        let log = Rc::new(RefCell::new(Vec::new()));
        // A fixed 20 s delay puts every restart outside a 10 s window.
        let slow =
            ExponentialBackoff::try_new(Duration::from_secs(20), Duration::from_secs(20), 1.0, 0.0)
                .unwrap();
        let spec = SupervisorSpec::new("root", Strategy::OneForOne)
            .intensity(Intensity::try_new(1, Duration::from_secs(10)).unwrap())
            .restart_backoff(slow)
            .child(child(
                "bad",
                Restart::Permanent,
                Behavior::FailOnStart,
                &log,
            ));
        let (addr, rx) = spec.start_root(bus.observer());
        tokio::time::sleep(Duration::from_secs(95)).await;
        let starts = log.borrow().iter().filter(|l| *l == "start bad").count();
        assert!(starts >= 5, "kept restarting slowly: {starts}");
        addr.do_send(Shutdown {
            code: ExitCode::Stopped,
            reason: "test",
        });
        assert_eq!(rx.await.unwrap(), ExitCode::Stopped);
    }

    #[actix_rt::test]
    async fn panicking_child_is_reported_and_restarted() {
        tokio::time::pause();
        let bus = Recorder::default();
        let log = Rc::new(RefCell::new(Vec::new()));
        let spec = SupervisorSpec::new("root", Strategy::OneForOne)
            .intensity(Intensity::try_new(2, Duration::from_secs(10)).unwrap())
            .restart_backoff(no_jitter())
            .child(child("p", Restart::Permanent, Behavior::PanicOnStart, &log));
        let (_addr, rx) = spec.start_root(bus.observer());
        assert_eq!(rx.await.unwrap(), ExitCode::Retryable);
        let panics: Vec<String> = events(&bus)
            .iter()
            .filter_map(|r| match r {
                SupervisorEvent::ChildExited {
                    reason: ExitReason::Panicked { message },
                    ..
                } => Some(message.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(panics.len(), 3);
        assert_eq!(panics[0], "boom in p");
    }

    #[actix_rt::test]
    async fn fatal_child_ends_the_tree_with_its_code_without_restarting() {
        tokio::time::pause();
        let bus = Recorder::default();
        let log = Rc::new(RefCell::new(Vec::new()));
        let spec = SupervisorSpec::new("root", Strategy::OneForOne)
            .child(child("a", Restart::Permanent, Behavior::RunForever, &log))
            .child(child(
                "enroll",
                Restart::Permanent,
                Behavior::Fatal(ExitCode::CredentialsRejected),
                &log,
            ));
        let (_addr, rx) = spec.start_root(bus.observer());
        assert_eq!(rx.await.unwrap().code(), 4);
        assert_eq!(
            log.borrow().iter().filter(|l| *l == "start enroll").count(),
            1
        );
        assert!(
            !names(&bus)
                .iter()
                .any(|n| n.starts_with("child-restarting"))
        );
    }

    #[actix_rt::test]
    async fn transient_and_temporary_children_follow_their_policies() {
        tokio::time::pause();
        let bus = Recorder::default();
        let log = Rc::new(RefCell::new(Vec::new()));
        let spec = SupervisorSpec::new("root", Strategy::OneForOne)
            .restart_backoff(no_jitter())
            .child(child(
                "job",
                Restart::Transient,
                Behavior::ExitNormally,
                &log,
            ))
            .child(child(
                "once",
                Restart::Temporary,
                Behavior::FailOnStart,
                &log,
            ))
            .child(child(
                "flaky",
                Restart::Transient,
                Behavior::FailOnStart,
                &log,
            ));
        let (addr, rx) = spec.start_root(bus.observer());
        tokio::time::sleep(Duration::from_millis(350)).await;
        let count = |n: &str| log.borrow().iter().filter(|l| l.as_str() == n).count();
        assert_eq!(count("start job"), 1, "transient normal exit: no restart");
        assert_eq!(count("start once"), 1, "temporary: never restarted");
        assert!(
            count("start flaky") >= 2,
            "transient abnormal exit: restarted"
        );
        addr.do_send(Shutdown {
            code: ExitCode::Stopped,
            reason: "test",
        });
        let _ = rx.await;
    }

    #[actix_rt::test]
    async fn rest_for_one_restarts_the_failed_child_and_those_after_it() {
        tokio::time::pause();
        let bus = Recorder::default();
        let log = Rc::new(RefCell::new(Vec::new()));
        let spec = SupervisorSpec::new("cloud", Strategy::RestForOne)
            .intensity(Intensity::try_new(1, Duration::from_secs(60)).unwrap())
            .restart_backoff(no_jitter())
            .child(child(
                "first",
                Restart::Permanent,
                Behavior::RunForever,
                &log,
            ))
            .child(child(
                "middle",
                Restart::Permanent,
                Behavior::FailOnStart,
                &log,
            ))
            .child(child(
                "last",
                Restart::Permanent,
                Behavior::RunForever,
                &log,
            ));
        let (_addr, rx) = spec.start_root(bus.observer());
        let _ = rx.await;
        let log = log.borrow().clone();
        let pos = |s: &str, nth: usize| {
            log.iter()
                .enumerate()
                .filter(|(_, l)| l.as_str() == s)
                .nth(nth)
                .map(|(i, _)| i)
                .unwrap_or_else(|| panic!("{s} #{nth} missing in {log:?}"))
        };
        // `last` was stopped, then `middle` and `last` restarted in order.
        assert!(pos("stop last", 0) < pos("start middle", 1));
        assert!(pos("start middle", 1) < pos("start last", 1));
        // `first` was never restarted.
        assert_eq!(log.iter().filter(|l| *l == "start first").count(), 1);
    }

    #[actix_rt::test]
    async fn shutdown_stops_children_in_reverse_order_and_aborts_stragglers() {
        tokio::time::pause();
        let bus = Recorder::default();
        let log = Rc::new(RefCell::new(Vec::new()));
        let spec = SupervisorSpec::new("root", Strategy::OneForOne)
            .child(child("a", Restart::Permanent, Behavior::RunForever, &log))
            .child(
                child("stubborn", Restart::Permanent, Behavior::IgnoreStop, &log)
                    .shutdown_timeout(Duration::from_secs(2)),
            )
            .child(child("c", Restart::Permanent, Behavior::RunForever, &log));
        let (addr, rx) = spec.start_root(bus.observer());
        tokio::time::sleep(Duration::from_millis(10)).await;
        addr.do_send(Shutdown {
            code: ExitCode::Stopped,
            reason: "signal",
        });
        assert_eq!(rx.await.unwrap(), ExitCode::Stopped);
        let stops: Vec<String> = log
            .borrow()
            .iter()
            .filter(|l| l.starts_with("stop"))
            .cloned()
            .collect();
        assert_eq!(stops, ["stop c", "stop stubborn", "stop a"]);
        assert!(names(&bus).contains(&"child-killed stubborn".to_owned()));
        assert!(
            !names(&bus)
                .iter()
                .any(|n| n.starts_with("child-restarting"))
        );
    }

    #[actix_rt::test]
    async fn nested_supervisor_escalates_to_its_parent_which_restarts_it() {
        tokio::time::pause();
        let bus = Recorder::default();
        let log = Rc::new(RefCell::new(Vec::new()));
        let inner = SupervisorSpec::new("inner", Strategy::OneForOne)
            .intensity(Intensity::try_new(1, Duration::from_secs(60)).unwrap())
            .restart_backoff(no_jitter())
            .child(child(
                "bad",
                Restart::Permanent,
                Behavior::FailOnStart,
                &log,
            ));
        let outer = SupervisorSpec::new("root", Strategy::OneForOne)
            .intensity(Intensity::try_new(1, Duration::from_secs(60)).unwrap())
            .restart_backoff(no_jitter())
            .child(inner.into_child(Restart::Permanent));
        let (_addr, rx) = outer.start_root(bus.observer());
        assert_eq!(rx.await.unwrap(), ExitCode::Retryable);
        // inner: start + 1 restart, gives up; outer restarts inner once
        // (another start + restart), then gives up itself.
        assert_eq!(log.borrow().iter().filter(|l| *l == "start bad").count(), 4);
        let n = names(&bus);
        assert_eq!(n.iter().filter(|e| *e == "child-gave-up bad").count(), 2);
        assert!(n.contains(&"child-gave-up inner".to_owned()), "{n:?}");
    }

    #[test]
    fn intensity_rejects_a_zero_window() {
        assert!(Intensity::try_new(3, Duration::ZERO).is_err());
        let i = Intensity::try_new(3, Duration::from_secs(1)).unwrap();
        assert_eq!((i.max_restarts(), i.window()), (3, Duration::from_secs(1)));
    }
}
