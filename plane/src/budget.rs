//! A byte budget between the socket reader and one consumer.
//!
//! socketioxide hands every inbound packet to a synchronous extractor (see
//! `socket.rs`), so the reader of a daemon socket cannot wait for a slow
//! consumer (an HTTP download, a WebSocket terminal): it can only queue or
//! drop. A [`Budget`] bounds what one consumer may have queued. The reader
//! takes bytes before queueing, the consumer releases them as it goes; the
//! first take that would pass the limit trips the budget for good, the
//! reader stops routing to that consumer, and the consumer ends its transfer
//! with a clear error instead of letting the plane's memory grow.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: usize,
    tripped: AtomicBool,
    notify: Notify,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Budget {
            used: AtomicUsize::new(0),
            limit,
            tripped: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Reserves `n` bytes. False, and the budget is tripped for good, when
    /// that would pass the limit (or it was tripped before).
    pub fn try_take(&self, n: usize) -> bool {
        if self.is_tripped() {
            return false;
        }
        let prev = self.used.fetch_add(n, Ordering::AcqRel);
        if prev.saturating_add(n) > self.limit {
            self.release(n);
            self.trip();
            return false;
        }
        true
    }

    /// Gives `n` reserved bytes back.
    pub fn release(&self, n: usize) {
        // Never underflows: every release matches an earlier take.
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// Marks the budget exhausted and wakes [`Budget::tripped`] waiters.
    pub fn trip(&self) {
        self.tripped.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }

    /// Resolves once the budget is tripped (at once if it already is).
    pub async fn tripped(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a trip in between still wakes us.
            notified.as_mut().enable();
            if self.is_tripped() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn takes_up_to_the_limit_and_trips_beyond() {
        let b = Budget::new(10);
        assert!(b.try_take(6));
        assert!(b.try_take(4));
        b.release(4);
        assert!(b.try_take(3));
        assert!(!b.try_take(2));
        assert!(b.is_tripped());
        // Tripped for good, even with room again.
        b.release(100);
        assert!(!b.try_take(1));
    }

    #[tokio::test]
    async fn tripped_wakes_a_waiter_and_returns_at_once_afterwards() {
        let b = Arc::new(Budget::new(1));
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.tripped().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!b.try_take(2));
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), b.tripped())
            .await
            .unwrap();
    }
}
