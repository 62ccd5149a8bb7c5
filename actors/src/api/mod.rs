//! What actors share instead of knowing each other: the messages they
//! exchange, the typed vocabulary of the events that drive behaviour, and
//! the handles an actor is given at construction.
//!
//! | piece | file |
//! |---|---|
//! | [`Handle<M>`](handle::Handle): a late-bound recipient that survives the receiver's restarts | `handle.rs` |
//! | [`Outbox`](outbox::Outbox): send a command to the server or emit a message, whoever dispatches today | `outbox.rs` |
//! | [`Link`](link::Link): the outbound half of a registered connection; [`SocketEvent`](link::SocketEvent) | `link.rs` |
//! | [`Router`](router::Router): routed (non-command) inbound messages by type prefix | `router.rs` |
//! | [`Reply`](reply::Reply), [`Run`](reply::Run), [`CallInfo`](reply::CallInfo): answering inbound commands | `reply.rs` |
//! | [`Credentials`](credentials::Credentials) and the cell they are published in | `credentials.rs` |
//! | [`JobsCall`](jobs::JobsCall): a job command for whoever runs the job queues | `jobs.rs` |
//! | the event vocabulary: services, runtime actions, children | `vocab.rs` |
//!
//! Nothing here names an actor type: `daemon.rs` creates the handles, binds
//! each to the actor that serves it, and passes them to the actors that use
//! them.

pub mod credentials;
pub mod handle;
pub mod jobs;
pub mod link;
pub mod outbox;
pub mod reply;
pub mod router;
pub mod vocab;

pub use credentials::{Credentials, CredentialsCell};
pub use handle::Handle;
pub use jobs::{ConfigSource, JobsCall, JobsCommand, JobsFailure};
pub use link::{Lane, Lanes, Link, LinkError, SocketEvent};
pub use outbox::{CommandError, CurrentLink, Emit, Outbox, SendCommand};
pub use reply::{CallInfo, CommandHandler, Reply, Run, StreamReply, accepted, parse_payload};
pub use router::{Route, Router};
pub use vocab::{
    ActionStage, ChildState, CredentialOrigin, OutputStream, RuntimeAction, ServiceKind,
    ServiceState, WireLimit,
};
