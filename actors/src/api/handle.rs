//! [`Handle<M>`]: how an actor reaches whoever serves `M` without knowing
//! who that is.
//!
//! `daemon.rs` creates one handle per served message family and gives it to
//! the serving actor (which binds itself every time it starts, so a restart
//! is invisible to users of the handle) and to every actor that sends `M`.
//! While nobody is bound (before the first start, during a restart) sends
//! fail with [`HandleError::Unbound`] — callers decide whether that is a
//! 503, a retry or nothing.
//!
//! Everything runs on the daemon's single actix thread, so a plain
//! `Rc<RefCell<…>>` suffices.

use actix::dev::ToEnvelope;
use actix::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;
use thiserror::Error;

/// Why a message did not reach its receiver.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandleError {
    #[error("{0} is not running")]
    Unbound(&'static str),
    #[error("{0} stopped before answering")]
    Gone(&'static str),
}

/// A late-bound recipient of `M` (see the module docs).
pub struct Handle<M>
where
    M: Message + Send,
    M::Result: Send,
{
    /// Who serves it, for error messages ("status machine", "terminal sessions").
    what: &'static str,
    slot: Rc<RefCell<Option<Recipient<M>>>>,
}

impl<M> Clone for Handle<M>
where
    M: Message + Send,
    M::Result: Send,
{
    fn clone(&self) -> Self {
        Handle {
            what: self.what,
            slot: self.slot.clone(),
        }
    }
}

impl<M> Handle<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    /// An unbound handle; `what` names the server in errors.
    pub fn new(what: &'static str) -> Self {
        Handle {
            what,
            slot: Rc::default(),
        }
    }

    /// Makes `addr` the receiver (called by the serving actor on start).
    pub fn bind<A>(&self, addr: Addr<A>)
    where
        A: Actor + Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        *self.slot.borrow_mut() = Some(addr.recipient());
    }

    /// The current receiver, if one is bound and alive.
    pub fn recipient(&self) -> Option<Recipient<M>> {
        self.slot
            .borrow()
            .as_ref()
            .filter(|r| r.connected())
            .cloned()
    }

    /// Whether a live receiver is bound.
    pub fn is_bound(&self) -> bool {
        self.recipient().is_some()
    }

    /// Fire and forget; `false` when nobody received it.
    pub fn do_send(&self, msg: M) -> bool {
        match self.recipient() {
            Some(r) => {
                r.do_send(msg);
                true
            }
            None => false,
        }
    }

    /// Sends and waits for the answer.
    pub async fn send(&self, msg: M) -> Result<M::Result, HandleError> {
        let Some(r) = self.recipient() else {
            return Err(HandleError::Unbound(self.what));
        };
        r.send(msg).await.map_err(|_| HandleError::Gone(self.what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Message)]
    #[rtype(result = "u32")]
    struct Double(u32);

    struct Doubler;
    impl Actor for Doubler {
        type Context = Context<Self>;
    }
    impl Handler<Double> for Doubler {
        type Result = u32;
        fn handle(&mut self, Double(n): Double, _: &mut Context<Self>) -> u32 {
            n * 2
        }
    }

    #[actix_rt::test]
    async fn unbound_handles_fail_clearly_and_rebinding_is_seen_by_every_clone() {
        let h: Handle<Double> = Handle::new("doubler");
        let user = h.clone();
        assert_eq!(
            user.send(Double(1)).await,
            Err(HandleError::Unbound("doubler"))
        );
        assert!(!user.do_send(Double(1)));
        let first = Doubler.start();
        h.bind(first.clone());
        assert_eq!(user.send(Double(2)).await, Ok(4));
        // A restarted server binds again; users keep their handle.
        let second = Doubler.start();
        h.bind(second);
        drop(first);
        assert_eq!(user.send(Double(3)).await, Ok(6));
        assert!(user.is_bound());
    }
}
