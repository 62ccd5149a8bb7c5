//! Waiting on observable state: the kit's one `eventually`.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::panic::Location;
use std::time::Duration;

/// How long a test waits for something that should happen at once: a
/// message over loopback, an in-memory state change, a local process
/// exiting. Generous, because CI runs the whole suite on 2 cores at once.
pub const WAIT: Duration = Duration::from_secs(5);

/// The first pause between two checks. Short, so conditions that hold
/// almost at once cost almost nothing.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// The pause doubles after each miss up to this: a probe that spawns a
/// process or queries a server then runs ten times a second at most.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// What a probe of [`eventually`] returns: whether the state was reached,
/// and with which value.
pub trait Settled {
    type Value;
    /// `Ok(value)` once reached; otherwise the reason to show if the wait
    /// times out (the last error of a `Result` probe).
    fn settled(self) -> Result<Self::Value, Option<String>>;
}

impl Settled for bool {
    type Value = ();
    fn settled(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Settled for Option<T> {
    type Value = T;
    fn settled(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Debug> Settled for Result<T, E> {
    type Value = T;
    fn settled(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(format!("{e:?}")))
    }
}

/// Checks `probe` until it returns `true`, `Some(v)` or `Ok(v)` and returns
/// `v`; panics after `within` with `what`, the caller's location, the
/// number of checks and (for a `Result` probe) the last error.
///
/// The probe is an async closure, so it may await (a request, a message to
/// an actor) and borrow from the test: `eventually(WAIT, "registered",
/// async || plane.cluster(&id).filter(|c| c.connected))`. It runs at once,
/// then after pauses from 5 ms doubling up to 100 ms. Time is tokio's, so
/// under paused time the wait costs no real time.
#[track_caller]
pub fn eventually<S: Settled>(
    within: Duration,
    what: impl Display,
    mut probe: impl AsyncFnMut() -> S,
) -> impl Future<Output = S::Value> {
    let caller = Location::caller();
    async move {
        let deadline = tokio::time::Instant::now() + within;
        let mut pause = FIRST_PAUSE;
        let mut checks = 0u32;
        loop {
            checks += 1;
            let last = match probe().await.settled() {
                Ok(v) => return v,
                Err(last) => last,
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                let last = last
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default();
                panic!(
                    "{caller}: timed out after {within:?} waiting for {what} ({checks} checks){last}"
                );
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_the_value_once_the_probe_settles() {
        let mut n = 0;
        let v = eventually(WAIT, "the third check", async || {
            n += 1;
            (n == 3).then_some(n * 10)
        })
        .await;
        assert_eq!(v, 30);
        let mut tries = 0;
        let ok: u8 = eventually(WAIT, "ok", async || {
            tries += 1;
            if tries < 2 { Err("not yet") } else { Ok(7) }
        })
        .await;
        assert_eq!(ok, 7);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 1s waiting for the impossible")]
    async fn panics_with_what_it_waited_for() {
        eventually(Duration::from_secs(1), "the impossible", async || false).await;
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "last error: \"refused\"")]
    async fn a_result_probe_shows_its_last_error() {
        eventually(Duration::from_secs(1), "a connection", async || {
            Err::<(), _>("refused")
        })
        .await;
    }
}
