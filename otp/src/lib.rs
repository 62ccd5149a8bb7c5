//! Erlang/OTP supervision semantics for actix, with nothing of VOLT in it.
//!
//! | module | what |
//! |---|---|
//! | [`supervisor`] | supervisors and child specs: ordered start, reverse stop with timeouts, permanent/transient/temporary, one_for_one/rest_for_one, panics become exit reasons, escalation |
//! | [`policy`] | the one [`RestartPolicy`](policy::RestartPolicy): restart intensity (N in T) plus jittered exponential delays |
//! | [`backoff`] | [`ExponentialBackoff`](backoff::ExponentialBackoff) with a validating constructor |
//! | [`exit`] | the documented process exit-code table and the exit reason a child reports |
//!
//! Supervisors report what they do as [`supervisor::SupervisorEvent`]s to an
//! observer the embedding application supplies (voltd puts them on its log
//! stream).
#![forbid(unsafe_code)]

pub mod backoff;
pub mod exit;
pub mod policy;
pub mod supervisor;

pub use backoff::ExponentialBackoff;
pub use exit::{ExitCode, ExitReason, ExitSlot, panic_message};
pub use policy::{Decision, Intensity, RestartPolicy};
pub use supervisor::{
    ChildEnv, ChildSpec, Observer, Restart, RunningChild, Shutdown, StopChild, Strategy,
    Supervisor, SupervisorEvent, SupervisorSpec, spawn_actor,
};
