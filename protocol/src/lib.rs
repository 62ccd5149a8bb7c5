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
//!   ([`status`]), the wire error codes ([`error_code`]) and the signed
//!   release manifest of voltd's self-update ([`release`]).
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
pub mod release;
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

/// Encodes `msg` as the complete WebSocket text frame that carries it:
/// `42["team-cluster-daemon:message",{…}]` (Engine.IO message + Socket.IO
/// event on the default namespace, no ack). Written in one pass: this is the
/// daemon's hottest encoding path.
pub fn encode_message_frame(msg: &Message) -> Result<String, serde_json::Error> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"42[\"");
    buf.extend_from_slice(MESSAGE_EVENT.as_bytes());
    buf.extend_from_slice(b"\",");
    serde_json::to_writer(&mut buf, msg)?;
    buf.push(b']');
    // serde_json writes UTF-8 and the prefix is ASCII.
    String::from_utf8(buf).map_err(serde::ser::Error::custom)
}

/// Encodes an event with one argument as a complete WebSocket text frame,
/// optionally asking for an acknowledgement with `ack_id`.
pub fn encode_event_frame<T: serde::Serialize + ?Sized>(
    event: &str,
    arg: &T,
    ack_id: Option<u64>,
) -> Result<String, serde_json::Error> {
    let sio = socketio::encode_event(socketio::DEFAULT_NAMESPACE, ack_id, event, arg)?;
    Ok(engineio::message_frame(&sio))
}

#[cfg(test)]
mod tests {
    use super::*;
    use envelope::ResponseMessage;

    #[test]
    fn message_frame_equals_the_layered_encoding() {
        let msg = Message::Response(ResponseMessage::success("r", serde_json::json!({"a": "é"})));
        let layered = engineio::message_frame(
            &socketio::encode_event("/", None, MESSAGE_EVENT, &msg).unwrap(),
        );
        assert_eq!(encode_message_frame(&msg).unwrap(), layered);
        assert!(layered.starts_with(r#"42["team-cluster-daemon:message",{"type":"response""#));
    }

    #[test]
    fn event_frame_with_ack_id() {
        let f = encode_event_frame(REGISTER_EVENT, &serde_json::json!({"a": 1}), Some(0)).unwrap();
        assert_eq!(f, r#"420["team-cluster-daemon:register",{"a":1}]"#);
    }
}
