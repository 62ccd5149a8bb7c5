//! The VOLT daemon wire protocol, with no I/O.
//!
//! Three layers, each a pure codec that can be tested byte for byte:
//!
//! * [`engineio`] — Engine.IO v4 packets as they travel in WebSocket frames
//!   (`0{open}`, `2`/`3` ping/pong, `4<message>`, …).
//! * [`socketio`] — Socket.IO v5 packets carried in Engine.IO messages
//!   (CONNECT, EVENT with ack ids, namespaces, binary attachments, …).
//! * VOLT itself: the three event names and the `team-cluster-daemon:message`
//!   envelope ([`envelope`]), registration and enrollment bodies
//!   ([`register`], [`enrollment`]), the heartbeat and its metrics
//!   ([`heartbeat`]), cluster status ids and the server's transition table
//!   ([`status`]) and the wire error codes ([`error_code`]).
//!
//! The generation targeted is "Gen B" of the reference (`chunkBase64`,
//! `bodyBase64`, `runtime.heartbeat` as a command).
#![forbid(unsafe_code)]

pub mod engineio;
pub mod enrollment;
pub mod envelope;
pub mod error_code;
pub mod heartbeat;
pub mod register;
pub mod socketio;
pub mod status;

pub use envelope::Message;
pub use error_code::ErrorCode;
pub use status::ClusterStatus;

/// The event a daemon emits after every (re)connect to authenticate the socket.
pub const REGISTER_EVENT: &str = "team-cluster-daemon:register";
/// The event the server answers a successful registration with.
pub const REGISTERED_EVENT: &str = "team-cluster-daemon:registered";
/// The event that carries every envelope ([`Message`]) in both directions.
pub const MESSAGE_EVENT: &str = "team-cluster-daemon:message";

/// The Socket.IO path the reference server uses (nothing custom is configured).
pub const SOCKET_IO_PATH: &str = "/socket.io/";
/// The query string that selects Engine.IO v4 over a WebSocket directly.
pub const SOCKET_IO_QUERY: &str = "EIO=4&transport=websocket";
