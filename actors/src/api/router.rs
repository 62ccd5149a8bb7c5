//! Routed messages: inbound envelopes that are neither commands nor
//! responses (`session-input`, `session-resize`, …) go to whoever
//! subscribed to their type's prefix. Subscriptions live here, not in the
//! dispatcher, so they survive its restarts; a subscriber that restarts
//! subscribes again.

use actix::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;
use volt_protocol::Message as WireMessage;

/// A non-command, non-response message delivered to a subscriber.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Route(pub WireMessage);

/// One subscription: a `type` prefix and who gets it.
type Subscription = (String, Recipient<Route>);

/// Subscriptions by `type` prefix. Cheap to clone.
#[derive(Clone, Default)]
pub struct Router(Rc<RefCell<Vec<Subscription>>>);

impl Router {
    /// Delivers `type`s starting with `prefix` (e.g. `session-`) to `to`,
    /// replacing a dead subscriber of the same prefix.
    pub fn subscribe(&self, prefix: impl Into<String>, to: Recipient<Route>) {
        let prefix = prefix.into();
        let mut subs = self.0.borrow_mut();
        subs.retain(|(p, r)| p != &prefix || r.connected());
        subs.push((prefix, to));
    }

    /// Delivers to every live subscriber whose prefix matches; `false`
    /// when nobody took it.
    pub fn deliver(&self, msg: &WireMessage) -> bool {
        let kind = msg.type_str();
        let mut delivered = false;
        let mut subs = self.0.borrow_mut();
        subs.retain(|(_, r)| r.connected());
        for (prefix, to) in subs.iter() {
            if kind.starts_with(prefix.as_str()) {
                to.do_send(Route(msg.clone()));
                delivered = true;
            }
        }
        delivered
    }
}
