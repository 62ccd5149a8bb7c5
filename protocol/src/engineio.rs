//! Engine.IO v4 packets over the WebSocket transport.
//!
//! Over a WebSocket every text frame is one packet: a single ASCII digit for
//! the packet type followed by its data (`0{…}` open, `2` ping, `3` pong,
//! `4…` message). Binary frames carry raw binary messages without a type
//! prefix; they are not represented here because they need no decoding.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Engine.IO packet type digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Open,
    Close,
    Ping,
    Pong,
    Message,
    Upgrade,
    Noop,
}

impl PacketType {
    /// The digit that starts a text frame of this type.
    pub fn as_char(self) -> char {
        match self {
            PacketType::Open => '0',
            PacketType::Close => '1',
            PacketType::Ping => '2',
            PacketType::Pong => '3',
            PacketType::Message => '4',
            PacketType::Upgrade => '5',
            PacketType::Noop => '6',
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => PacketType::Open,
            b'1' => PacketType::Close,
            b'2' => PacketType::Ping,
            b'3' => PacketType::Pong,
            b'4' => PacketType::Message,
            b'5' => PacketType::Upgrade,
            b'6' => PacketType::Noop,
            _ => return None,
        })
    }
}

/// The handshake the server sends as the first packet (`0{…}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenPayload {
    pub sid: String,
    #[serde(default)]
    pub upgrades: Vec<String>,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong (and the client should wait
    /// beyond `ping_interval` before it declares the link dead).
    pub ping_timeout: u64,
    /// Largest packet, in bytes, the server accepts. Absent in some servers;
    /// the reference default (1 MB) applies then.
    #[serde(default = "default_max_payload")]
    pub max_payload: u64,
}

/// socket.io's default `maxHttpBufferSize`, used when the open packet omits it.
pub const DEFAULT_MAX_PAYLOAD: u64 = 1_000_000;

fn default_max_payload() -> u64 {
    DEFAULT_MAX_PAYLOAD
}

/// One decoded text packet, borrowing its data from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Open(OpenPayload),
    Close,
    /// A ping; the data (e.g. `probe`) must be echoed in the pong.
    Ping(&'a str),
    Pong(&'a str),
    /// A message: for Socket.IO this is one encoded Socket.IO packet.
    Message(&'a str),
    Upgrade,
    Noop,
}

/// Why a text frame is not a valid Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("empty engine.io packet")]
    Empty,
    #[error("unknown engine.io packet type {0:?}")]
    UnknownType(char),
    #[error("invalid engine.io open packet: {0}")]
    InvalidOpen(String),
}

impl<'a> Packet<'a> {
    /// Decodes one WebSocket text frame.
    pub fn decode(frame: &'a str) -> Result<Packet<'a>, DecodeError> {
        let first = *frame.as_bytes().first().ok_or(DecodeError::Empty)?;
        let kind = PacketType::from_byte(first)
            .ok_or_else(|| DecodeError::UnknownType(frame.chars().next().unwrap_or('\u{fffd}')))?;
        // The type digit is ASCII, so index 1 is a char boundary.
        let data = &frame[1..];
        Ok(match kind {
            PacketType::Open => Packet::Open(
                serde_json::from_str(data).map_err(|e| DecodeError::InvalidOpen(e.to_string()))?,
            ),
            PacketType::Close => Packet::Close,
            PacketType::Ping => Packet::Ping(data),
            PacketType::Pong => Packet::Pong(data),
            PacketType::Message => Packet::Message(data),
            PacketType::Upgrade => Packet::Upgrade,
            PacketType::Noop => Packet::Noop,
        })
    }

    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Open(_) => PacketType::Open,
            Packet::Close => PacketType::Close,
            Packet::Ping(_) => PacketType::Ping,
            Packet::Pong(_) => PacketType::Pong,
            Packet::Message(_) => PacketType::Message,
            Packet::Upgrade => PacketType::Upgrade,
            Packet::Noop => PacketType::Noop,
        }
    }

    /// Encodes the packet as the text of one WebSocket frame.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        out.push(self.packet_type().as_char());
        match self {
            Packet::Open(open) => {
                // Serialising a struct of strings and integers cannot fail.
                out.push_str(&serde_json::to_string(open).unwrap_or_default());
            }
            Packet::Ping(d) | Packet::Pong(d) | Packet::Message(d) => out.push_str(d),
            Packet::Close | Packet::Upgrade | Packet::Noop => {}
        }
        out
    }
}

/// The pong frame that answers a ping frame with the same data.
pub fn pong_for(ping_data: &str) -> String {
    let mut s = String::with_capacity(1 + ping_data.len());
    s.push('3');
    s.push_str(ping_data);
    s
}

/// Wraps an encoded Socket.IO packet in an Engine.IO message frame.
pub fn message_frame(socketio_packet: &str) -> String {
    let mut s = String::with_capacity(1 + socketio_packet.len());
    s.push('4');
    s.push_str(socketio_packet);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_the_socket_io_4_8_open_packet() {
        let frame = r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        let Packet::Open(open) = Packet::decode(frame).unwrap() else {
            panic!("not an open packet");
        };
        assert_eq!(open.sid, "abc");
        assert_eq!(open.ping_interval, 25_000);
        assert_eq!(open.ping_timeout, 20_000);
        assert_eq!(open.max_payload, 1_000_000);
        assert!(open.upgrades.is_empty());
    }

    #[test]
    fn open_without_max_payload_gets_the_reference_default() {
        let frame = r#"0{"sid":"abc","pingInterval":1,"pingTimeout":2}"#;
        let Packet::Open(open) = Packet::decode(frame).unwrap() else {
            panic!("not an open packet");
        };
        assert_eq!(open.max_payload, DEFAULT_MAX_PAYLOAD);
    }

    #[test]
    fn open_with_missing_ping_interval_is_an_error() {
        assert!(matches!(
            Packet::decode(r#"0{"sid":"a","pingTimeout":2}"#),
            Err(DecodeError::InvalidOpen(_))
        ));
        assert!(matches!(
            Packet::decode("0not json"),
            Err(DecodeError::InvalidOpen(_))
        ));
    }

    #[test]
    fn decodes_every_simple_type() {
        assert_eq!(Packet::decode("1").unwrap(), Packet::Close);
        assert_eq!(Packet::decode("2").unwrap(), Packet::Ping(""));
        assert_eq!(Packet::decode("2probe").unwrap(), Packet::Ping("probe"));
        assert_eq!(Packet::decode("3").unwrap(), Packet::Pong(""));
        assert_eq!(Packet::decode("40").unwrap(), Packet::Message("0"));
        assert_eq!(Packet::decode("5").unwrap(), Packet::Upgrade);
        assert_eq!(Packet::decode("6").unwrap(), Packet::Noop);
    }

    #[test]
    fn rejects_empty_and_unknown_types() {
        assert_eq!(Packet::decode(""), Err(DecodeError::Empty));
        assert_eq!(Packet::decode("7"), Err(DecodeError::UnknownType('7')));
        assert_eq!(Packet::decode("x42"), Err(DecodeError::UnknownType('x')));
        assert_eq!(Packet::decode("é"), Err(DecodeError::UnknownType('é')));
    }

    #[test]
    fn pong_echoes_ping_data() {
        assert_eq!(pong_for(""), "3");
        assert_eq!(pong_for("probe"), "3probe");
    }

    #[test]
    fn message_frame_prefixes_4() {
        assert_eq!(message_frame("40"), "440");
    }

    #[test]
    fn encode_round_trips_open() {
        let open = OpenPayload {
            sid: "s".into(),
            upgrades: vec![],
            ping_interval: 10,
            ping_timeout: 20,
            max_payload: 30,
        };
        let p = Packet::Open(open.clone());
        assert_eq!(Packet::decode(&p.encode()).unwrap(), Packet::Open(open));
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in ".*") {
            let _ = Packet::decode(&s);
        }

        #[test]
        fn data_packets_round_trip(kind in 0u8..3, data in ".*") {
            let p = match kind {
                0 => Packet::Ping(&data),
                1 => Packet::Pong(&data),
                _ => Packet::Message(&data),
            };
            let encoded = p.encode();
            prop_assert_eq!(Packet::decode(&encoded).unwrap(), p);
        }
    }
}
