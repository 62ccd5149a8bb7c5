//! Socket.IO v5 packets, as carried inside Engine.IO messages.
//!
//! Text form: `<type>[<attachments>-][<namespace>,][<ack id>][<json>]`, for
//! example `40`, `42["event",{}]`, `43/admin,7["ok"]` or
//! `51-["upload",{"_placeholder":true,"num":0}]` followed by one binary frame.
//!
//! Decoding borrows from the frame ([`Packet`]); the JSON data is validated
//! once and kept as a [`RawValue`] so the VOLT layer parses it only once more,
//! straight into its typed envelope.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use thiserror::Error;

/// The default namespace; the only one VOLT uses.
pub const DEFAULT_NAMESPACE: &str = "/";

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

impl PacketKind {
    /// The digit that starts the packet.
    pub fn as_char(self) -> char {
        match self {
            PacketKind::Connect => '0',
            PacketKind::Disconnect => '1',
            PacketKind::Event => '2',
            PacketKind::Ack => '3',
            PacketKind::ConnectError => '4',
            PacketKind::BinaryEvent => '5',
            PacketKind::BinaryAck => '6',
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => PacketKind::Connect,
            b'1' => PacketKind::Disconnect,
            b'2' => PacketKind::Event,
            b'3' => PacketKind::Ack,
            b'4' => PacketKind::ConnectError,
            b'5' => PacketKind::BinaryEvent,
            b'6' => PacketKind::BinaryAck,
            _ => return None,
        })
    }

    /// Whether binary attachments follow this packet.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketKind::BinaryEvent | PacketKind::BinaryAck)
    }
}

/// Why a string is not a valid Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("empty socket.io packet")]
    Empty,
    #[error("unknown socket.io packet type {0:?}")]
    UnknownType(char),
    #[error("invalid attachment count")]
    InvalidAttachments,
    #[error("namespace is not terminated by a comma")]
    UnterminatedNamespace,
    #[error("invalid ack id")]
    InvalidAckId,
    #[error("invalid JSON payload: {0}")]
    InvalidJson(String),
    #[error("payload is not valid for a {0:?} packet")]
    InvalidPayload(PacketKind),
}

/// Largest attachment count accepted; socket.io-parser has no limit, but a
/// peer announcing more than this is broken or hostile (each one is a frame).
pub const MAX_ATTACHMENTS: u32 = 10_000;

/// A decoded packet that borrows from the text it came from.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    pub kind: PacketKind,
    pub namespace: &'a str,
    pub id: Option<u64>,
    /// Number of binary frames that follow (binary kinds only; 0 otherwise).
    pub attachments: u32,
    pub data: Option<&'a RawValue>,
}

/// Everything before a packet's JSON data.
struct Header<'a> {
    kind: PacketKind,
    attachments: u32,
    namespace: &'a str,
    id: Option<u64>,
    /// Byte offset of the JSON data (== len when there is none).
    data_start: usize,
}

impl<'a> Header<'a> {
    fn parse(input: &'a str) -> Result<Header<'a>, DecodeError> {
        let bytes = input.as_bytes();
        let first = *bytes.first().ok_or(DecodeError::Empty)?;
        let kind = PacketKind::from_byte(first)
            .ok_or_else(|| DecodeError::UnknownType(input.chars().next().unwrap_or('\u{fffd}')))?;
        let mut i = 1;

        let mut attachments = 0u32;
        if kind.is_binary() {
            let start = i;
            while i < bytes.len() && bytes[i] != b'-' {
                if !bytes[i].is_ascii_digit() {
                    return Err(DecodeError::InvalidAttachments);
                }
                i += 1;
            }
            if i == start || i >= bytes.len() {
                return Err(DecodeError::InvalidAttachments);
            }
            attachments = input[start..i]
                .parse()
                .ok()
                .filter(|n| *n <= MAX_ATTACHMENTS)
                .ok_or(DecodeError::InvalidAttachments)?;
            i += 1; // the '-'
        }

        let mut namespace = DEFAULT_NAMESPACE;
        if bytes.get(i) == Some(&b'/') {
            let start = i;
            match input[i..].find(',') {
                Some(off) => {
                    namespace = &input[start..i + off];
                    i += off + 1;
                }
                None => {
                    // A namespace with nothing after it (e.g. `40/admin`) is
                    // valid: it simply ends the packet.
                    namespace = &input[start..];
                    i = bytes.len();
                }
            }
        }

        let mut id = None;
        let id_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i > id_start {
            id = Some(
                input[id_start..i]
                    .parse::<u64>()
                    .map_err(|_| DecodeError::InvalidAckId)?,
            );
        }
        Ok(Header {
            kind,
            attachments,
            namespace,
            id,
            data_start: i,
        })
    }
}

/// An EVENT packet reduced to what a receiver acts on, decoded in a single
/// pass over its JSON: the name and the first argument (kept raw; further
/// arguments are checked and skipped). VOLT events carry one argument, so
/// this is the receive hot path; [`Packet::decode`] is the general form.
#[derive(Debug, Clone)]
pub struct EventRef<'a> {
    pub namespace: &'a str,
    pub id: Option<u64>,
    pub name: Cow<'a, str>,
    pub first_arg: Option<&'a RawValue>,
}

impl<'a> EventRef<'a> {
    /// Decodes `input` if it is an EVENT packet (`2…`); any other packet
    /// type is `InvalidPayload` of its kind, for the caller to fall back to
    /// [`Packet::decode`].
    pub fn decode(input: &'a str) -> Result<EventRef<'a>, DecodeError> {
        let h = Header::parse(input)?;
        if h.kind != PacketKind::Event {
            return Err(DecodeError::InvalidPayload(h.kind));
        }
        let data = &input[h.data_start..];
        let (name, first_arg) = serde_json::from_str::<NameAndFirst<'a>>(data)
            .map(|n| (n.0, n.1))
            .map_err(|e| {
                if data.trim_start().starts_with('[') {
                    DecodeError::InvalidJson(e.to_string())
                } else {
                    DecodeError::InvalidPayload(PacketKind::Event)
                }
            })?;
        Ok(EventRef {
            namespace: h.namespace,
            id: h.id,
            name,
            first_arg,
        })
    }
}

/// `["name", first?, …]` deserialised in one pass.
struct NameAndFirst<'a>(Cow<'a, str>, Option<&'a RawValue>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for NameAndFirst<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = NameAndFirst<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event array starting with its name")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let name: Cow<'a, str> = seq
                    .next_element()?
                    .ok_or_else(|| serde::de::Error::invalid_length(0, &self))?;
                let first: Option<&'a RawValue> = seq.next_element()?;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(NameAndFirst(name, first))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

impl PartialEq for Packet<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.namespace == other.namespace
            && self.id == other.id
            && self.attachments == other.attachments
            && self.data.map(RawValue::get) == other.data.map(RawValue::get)
    }
}

impl<'a> Packet<'a> {
    /// Decodes one Socket.IO packet (the data of an Engine.IO message).
    pub fn decode(input: &'a str) -> Result<Packet<'a>, DecodeError> {
        let Header {
            kind,
            attachments,
            namespace,
            id,
            data_start: i,
        } = Header::parse(input)?;
        let rest = &input[i..];
        let data = if rest.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str::<&RawValue>(rest)
                    .map_err(|e| DecodeError::InvalidJson(e.to_string()))?,
            )
        };

        let packet = Packet {
            kind,
            namespace,
            id,
            attachments,
            data,
        };
        packet.validate()?;
        Ok(packet)
    }

    fn validate(&self) -> Result<(), DecodeError> {
        let first = self.data.map(|d| d.get().as_bytes()[0]);
        let ok = match self.kind {
            PacketKind::Connect => matches!(first, None | Some(b'{')),
            PacketKind::Disconnect => first.is_none(),
            PacketKind::ConnectError => matches!(first, Some(b'{') | Some(b'"')),
            PacketKind::Event | PacketKind::BinaryEvent => {
                first == Some(b'[') && self.event_name().is_ok()
            }
            PacketKind::Ack | PacketKind::BinaryAck => first == Some(b'[') && self.id.is_some(),
        };
        if ok {
            Ok(())
        } else {
            Err(DecodeError::InvalidPayload(self.kind))
        }
    }

    /// The arguments of an EVENT/ACK packet, each kept as raw JSON.
    pub fn args(&self) -> Result<Vec<&'a RawValue>, DecodeError> {
        let data = self.data.ok_or(DecodeError::InvalidPayload(self.kind))?;
        serde_json::from_str::<Vec<&'a RawValue>>(data.get())
            .map_err(|_| DecodeError::InvalidPayload(self.kind))
    }

    /// The event name of an EVENT packet (its first argument).
    pub fn event_name(&self) -> Result<Cow<'a, str>, DecodeError> {
        let args = self.args()?;
        let first = args.first().ok_or(DecodeError::InvalidPayload(self.kind))?;
        serde_json::from_str::<Cow<'a, str>>(first.get())
            .map_err(|_| DecodeError::InvalidPayload(self.kind))
    }

    /// Splits an EVENT packet into its name and the arguments after it.
    pub fn event(&self) -> Result<(Cow<'a, str>, Vec<&'a RawValue>), DecodeError> {
        let mut args = self.args()?;
        if args.is_empty() {
            return Err(DecodeError::InvalidPayload(self.kind));
        }
        let name_raw = args.remove(0);
        let name = serde_json::from_str::<Cow<'a, str>>(name_raw.get())
            .map_err(|_| DecodeError::InvalidPayload(self.kind))?;
        Ok((name, args))
    }

    /// The `message` of a CONNECT_ERROR packet (object form or plain string).
    pub fn connect_error_message(&self) -> Option<String> {
        let data = self.data?;
        match serde_json::from_str::<Value>(data.get()).ok()? {
            Value::String(s) => Some(s),
            Value::Object(map) => map
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| Some(Value::Object(map).to_string())),
            _ => None,
        }
    }

    /// Encodes the packet back to text.
    pub fn encode(&self) -> String {
        encode_raw(
            self.kind,
            self.namespace,
            self.id,
            self.attachments,
            self.data.map(RawValue::get),
        )
    }

    /// An owned copy, for packets that must wait for their binary attachments.
    pub fn to_owned_packet(&self) -> OwnedPacket {
        OwnedPacket {
            kind: self.kind,
            namespace: self.namespace.to_owned(),
            id: self.id,
            attachments: self.attachments,
            data: self.data.map(|d| d.to_owned()),
        }
    }
}

/// An owned packet (see [`Packet::to_owned_packet`]).
#[derive(Debug, Clone)]
pub struct OwnedPacket {
    pub kind: PacketKind,
    pub namespace: String,
    pub id: Option<u64>,
    pub attachments: u32,
    pub data: Option<Box<RawValue>>,
}

impl OwnedPacket {
    /// Borrows the packet back as a [`Packet`].
    pub fn as_packet(&self) -> Packet<'_> {
        Packet {
            kind: self.kind,
            namespace: &self.namespace,
            id: self.id,
            attachments: self.attachments,
            data: self.data.as_deref(),
        }
    }
}

/// Encodes a packet from its parts; `data` must already be JSON text.
pub fn encode_raw(
    kind: PacketKind,
    namespace: &str,
    id: Option<u64>,
    attachments: u32,
    data: Option<&str>,
) -> String {
    let mut out = String::with_capacity(8 + namespace.len() + data.map_or(0, str::len));
    out.push(kind.as_char());
    if kind.is_binary() {
        out.push_str(&attachments.to_string());
        out.push('-');
    }
    if namespace != DEFAULT_NAMESPACE && !namespace.is_empty() {
        out.push_str(namespace);
        out.push(',');
    }
    if let Some(id) = id {
        out.push_str(&id.to_string());
    }
    if let Some(d) = data {
        out.push_str(d);
    }
    out
}

/// `0[/nsp,][{auth}]`: the CONNECT a client sends to join a namespace.
pub fn encode_connect(namespace: &str, auth: Option<&Value>) -> String {
    let auth = auth.map(Value::to_string);
    encode_raw(PacketKind::Connect, namespace, None, 0, auth.as_deref())
}

/// `1[/nsp,]`: leaves a namespace.
pub fn encode_disconnect(namespace: &str) -> String {
    encode_raw(PacketKind::Disconnect, namespace, None, 0, None)
}

/// `2[/nsp,][id]["event",arg]`: an event with exactly one argument, the only
/// shape VOLT uses. Fails only if `arg` cannot be serialised to JSON.
pub fn encode_event<T: Serialize + ?Sized>(
    namespace: &str,
    id: Option<u64>,
    event: &str,
    arg: &T,
) -> Result<String, serde_json::Error> {
    let mut data = Vec::with_capacity(128);
    data.push(b'[');
    serde_json::to_writer(&mut data, event)?;
    data.push(b',');
    serde_json::to_writer(&mut data, arg)?;
    data.push(b']');
    let data = String::from_utf8(data).map_err(serde::ser::Error::custom)?;
    Ok(encode_raw(PacketKind::Event, namespace, id, 0, Some(&data)))
}

/// `3[/nsp,]<id>[args…]`: acknowledges an event the peer sent with an ack id.
pub fn encode_ack(namespace: &str, id: u64, args: &[Value]) -> String {
    let data = Value::Array(args.to_vec()).to_string();
    encode_raw(PacketKind::Ack, namespace, Some(id), 0, Some(&data))
}

/// Why a placeholder cannot be filled.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlaceholderError {
    #[error("placeholder refers to attachment {num} but only {count} arrived")]
    OutOfRange { num: u64, count: usize },
}

/// Replaces every `{"_placeholder":true,"num":n}` in `value` with
/// `fill(&attachments[n])`, as socket.io-parser's `reconstructPacket` does.
pub fn fill_placeholders(
    value: &mut Value,
    attachments: &[Vec<u8>],
    fill: &dyn Fn(&[u8]) -> Value,
) -> Result<(), PlaceholderError> {
    match value {
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true))
                && let Some(num) = map.get("num").and_then(Value::as_u64)
            {
                let bytes = usize::try_from(num)
                    .ok()
                    .and_then(|n| attachments.get(n))
                    .ok_or(PlaceholderError::OutOfRange {
                        num,
                        count: attachments.len(),
                    })?;
                *value = fill(bytes);
                return Ok(());
            }
            for v in map.values_mut() {
                fill_placeholders(v, attachments, fill)?;
            }
        }
        Value::Array(items) => {
            for v in items {
                fill_placeholders(v, attachments, fill)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The JSON that stands for attachment `num` in a binary packet.
pub fn placeholder(num: u64) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}

/// A binary packet together with its attachments, in order.
pub type Assembled = (OwnedPacket, Vec<Vec<u8>>);

/// Default cap on the bytes of the attachments of one binary packet
/// ([`BinaryAssembler::new`]): 16 MiB, sixteen times socket.io's default
/// `maxHttpBufferSize`. A VOLT binary event (a Gen C `session-input` chunk,
/// a `command-binary` part) is a few KiB; without a total cap a peer could
/// announce [`MAX_ATTACHMENTS`] attachments of a whole frame each and make
/// the receiver hold gigabytes.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: usize = 16 << 20;

/// Collects the binary frames that follow a BINARY_EVENT / BINARY_ACK,
/// holding at most `max_bytes` of attachments at any time.
#[derive(Debug)]
pub struct BinaryAssembler {
    pending: Option<Assembled>,
    /// Bytes of the attachments collected for `pending`.
    held: usize,
    max_bytes: usize,
}

impl Default for BinaryAssembler {
    fn default() -> Self {
        BinaryAssembler::new(DEFAULT_MAX_ATTACHMENT_BYTES)
    }
}

/// Why a binary frame could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AssembleError {
    #[error("binary frame received with no binary packet waiting for it")]
    Unexpected,
    #[error("a new binary packet started before the previous one was complete")]
    Interrupted,
    /// The attachments of one packet add up to more than the cap; the
    /// packet was dropped (a peer that does this is broken or hostile).
    #[error("binary attachments of {size} bytes exceed the cap of {max} bytes")]
    TooLarge { size: usize, max: usize },
}

impl BinaryAssembler {
    /// An assembler that holds at most `max_bytes` of attachments.
    pub fn new(max_bytes: usize) -> Self {
        BinaryAssembler {
            pending: None,
            held: 0,
            max_bytes,
        }
    }

    /// The cap on attachment bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Starts collecting for `packet`. Packets without attachments are
    /// returned at once. Starting while another packet is incomplete drops
    /// that packet and reports it.
    pub fn start(&mut self, packet: OwnedPacket) -> Result<Option<Assembled>, AssembleError> {
        let interrupted = self.pending.take().is_some();
        self.held = 0;
        if packet.attachments == 0 {
            return if interrupted {
                Err(AssembleError::Interrupted)
            } else {
                Ok(Some((packet, Vec::new())))
            };
        }
        let n = packet.attachments as usize;
        self.pending = Some((packet, Vec::with_capacity(n.min(16))));
        if interrupted {
            Err(AssembleError::Interrupted)
        } else {
            Ok(None)
        }
    }

    /// Adds one binary frame; returns the packet once all have arrived. A
    /// frame that takes the packet's attachments over the cap drops the
    /// packet (`TooLarge`): nothing is kept.
    pub fn push(&mut self, frame: Vec<u8>) -> Result<Option<Assembled>, AssembleError> {
        let (packet, frames) = self.pending.as_mut().ok_or(AssembleError::Unexpected)?;
        let size = self.held.saturating_add(frame.len());
        if size > self.max_bytes {
            self.reset();
            return Err(AssembleError::TooLarge {
                size,
                max: self.max_bytes,
            });
        }
        self.held = size;
        frames.push(frame);
        if frames.len() as u32 >= packet.attachments {
            self.held = 0;
            Ok(self.pending.take())
        } else {
            Ok(None)
        }
    }

    /// Whether a binary packet is waiting for frames.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Bytes of attachments held for the waiting packet.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Drops anything half-assembled (on disconnect).
    pub fn reset(&mut self) {
        self.pending = None;
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn raw(p: &Packet<'_>) -> Option<String> {
        p.data.map(|d| d.get().to_owned())
    }

    #[test]
    fn decodes_plain_connect() {
        let p = Packet::decode("0").unwrap();
        assert_eq!(p.kind, PacketKind::Connect);
        assert_eq!(p.namespace, "/");
        assert_eq!(p.id, None);
        assert!(p.data.is_none());
    }

    #[test]
    fn decodes_connect_reply_with_sid() {
        let p = Packet::decode(r#"0{"sid":"xyz"}"#).unwrap();
        assert_eq!(p.kind, PacketKind::Connect);
        assert_eq!(raw(&p).unwrap(), r#"{"sid":"xyz"}"#);
    }

    #[test]
    fn decodes_connect_error_in_a_namespace() {
        let p = Packet::decode(r#"4/nope,{"message":"Invalid namespace"}"#).unwrap();
        assert_eq!(p.kind, PacketKind::ConnectError);
        assert_eq!(p.namespace, "/nope");
        assert_eq!(p.connect_error_message().unwrap(), "Invalid namespace");
    }

    #[test]
    fn connect_error_as_plain_string() {
        let p = Packet::decode(r#"4"Not authorized""#).unwrap();
        assert_eq!(p.connect_error_message().unwrap(), "Not authorized");
    }

    #[test]
    fn decodes_event_with_name_and_argument() {
        let p = Packet::decode(r#"2["team-cluster-daemon:message",{"type":"command"}]"#).unwrap();
        assert_eq!(p.kind, PacketKind::Event);
        let (name, args) = p.event().unwrap();
        assert_eq!(name, "team-cluster-daemon:message");
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].get(), r#"{"type":"command"}"#);
    }

    #[test]
    fn decodes_event_with_ack_id() {
        let p = Packet::decode(r#"212["hello",1,2]"#).unwrap();
        assert_eq!(p.id, Some(12));
        let (name, args) = p.event().unwrap();
        assert_eq!(name, "hello");
        assert_eq!(args.len(), 2);
    }

    #[test]
    fn decodes_event_with_namespace_and_ack_id() {
        let p = Packet::decode(r#"2/admin,7["x"]"#).unwrap();
        assert_eq!(p.namespace, "/admin");
        assert_eq!(p.id, Some(7));
        assert_eq!(p.event_name().unwrap(), "x");
    }

    #[test]
    fn event_name_with_escapes_is_unescaped() {
        let p = Packet::decode(r#"2["a\"b"]"#).unwrap();
        assert_eq!(p.event_name().unwrap(), "a\"b");
    }

    #[test]
    fn event_ref_decodes_name_id_and_first_argument_in_one_pass() {
        let e = EventRef::decode(r#"2/ns,17["a\"b",{"x":[1,2]},3]"#).unwrap();
        assert_eq!(e.namespace, "/ns");
        assert_eq!(e.id, Some(17));
        assert_eq!(e.name, "a\"b");
        assert_eq!(e.first_arg.unwrap().get(), r#"{"x":[1,2]}"#);
        let e = EventRef::decode(r#"2["only"]"#).unwrap();
        assert!(e.first_arg.is_none());
    }

    #[test]
    fn event_ref_rejects_what_packet_decode_rejects() {
        assert_eq!(
            EventRef::decode(r#"3["a"]"#).unwrap_err(),
            DecodeError::InvalidPayload(PacketKind::Ack)
        );
        for bad in ["2", "2{}", "2[]", "2[1]", "2[\"a\",", "2x"] {
            assert!(EventRef::decode(bad).is_err(), "{bad}");
            assert!(Packet::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decodes_ack() {
        let p = Packet::decode(r#"35[{"ok":true}]"#).unwrap();
        assert_eq!(p.kind, PacketKind::Ack);
        assert_eq!(p.id, Some(5));
        assert_eq!(p.args().unwrap().len(), 1);
    }

    #[test]
    fn decodes_binary_event_header() {
        let p = Packet::decode(
            r#"52-["upload",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        )
        .unwrap();
        assert_eq!(p.kind, PacketKind::BinaryEvent);
        assert_eq!(p.attachments, 2);
        assert_eq!(p.event_name().unwrap(), "upload");
    }

    #[test]
    fn decodes_binary_ack_with_namespace_and_id() {
        let p = Packet::decode(r#"61-/ns,9[{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(p.kind, PacketKind::BinaryAck);
        assert_eq!(p.attachments, 1);
        assert_eq!(p.namespace, "/ns");
        assert_eq!(p.id, Some(9));
    }

    #[test]
    fn decodes_disconnect_in_namespace() {
        let p = Packet::decode("1/admin,").unwrap();
        assert_eq!(p.kind, PacketKind::Disconnect);
        assert_eq!(p.namespace, "/admin");
    }

    #[test]
    fn namespace_without_comma_ends_the_packet() {
        let p = Packet::decode("0/admin").unwrap();
        assert_eq!(p.namespace, "/admin");
        assert!(p.data.is_none());
    }

    #[test]
    fn rejects_malformed_packets() {
        use DecodeError::*;
        assert_eq!(Packet::decode(""), Err(Empty));
        assert_eq!(Packet::decode("9"), Err(UnknownType('9')));
        assert_eq!(Packet::decode("5x-[\"a\"]"), Err(InvalidAttachments));
        assert_eq!(Packet::decode("5-[\"a\"]"), Err(InvalidAttachments));
        assert_eq!(Packet::decode("51"), Err(InvalidAttachments));
        assert_eq!(
            Packet::decode("599999999999-[\"a\"]"),
            Err(InvalidAttachments)
        );
        assert!(matches!(Packet::decode("2[oops"), Err(InvalidJson(_))));
        assert_eq!(
            Packet::decode("2{}"),
            Err(InvalidPayload(PacketKind::Event))
        );
        assert_eq!(
            Packet::decode("2[]"),
            Err(InvalidPayload(PacketKind::Event))
        );
        assert_eq!(
            Packet::decode("2[1]"),
            Err(InvalidPayload(PacketKind::Event))
        );
        assert_eq!(
            Packet::decode("0[1]"),
            Err(InvalidPayload(PacketKind::Connect))
        );
        assert_eq!(
            Packet::decode("1{}"),
            Err(InvalidPayload(PacketKind::Disconnect))
        );
        assert_eq!(Packet::decode("3[1]"), Err(InvalidPayload(PacketKind::Ack)));
        assert_eq!(
            Packet::decode("4"),
            Err(InvalidPayload(PacketKind::ConnectError))
        );
        assert_eq!(
            Packet::decode("299999999999999999999999[\"a\"]"),
            Err(InvalidAckId)
        );
    }

    #[test]
    fn encodes_connect_and_disconnect() {
        assert_eq!(encode_connect("/", None), "0");
        assert_eq!(
            encode_connect("/admin", Some(&json!({"t":1}))),
            r#"0/admin,{"t":1}"#
        );
        assert_eq!(encode_disconnect("/"), "1");
        assert_eq!(encode_disconnect("/a"), "1/a,");
    }

    #[test]
    fn encodes_event_exactly_like_socket_io() {
        let s = encode_event("/", None, "team-cluster-daemon:register", &json!({"a":"b"})).unwrap();
        assert_eq!(s, r#"2["team-cluster-daemon:register",{"a":"b"}]"#);
        let s = encode_event("/x", Some(3), "e", &1).unwrap();
        assert_eq!(s, r#"2/x,3["e",1]"#);
    }

    #[test]
    fn encodes_ack_echoing_the_id() {
        assert_eq!(encode_ack("/", 42, &[json!("ok")]), r#"342["ok"]"#);
        assert_eq!(encode_ack("/n", 1, &[]), "3/n,1[]");
    }

    #[test]
    fn assembler_collects_attachments_in_order() {
        let p = Packet::decode(
            r#"52-["f",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        )
        .unwrap();
        let mut asm = BinaryAssembler::default();
        assert!(asm.start(p.to_owned_packet()).unwrap().is_none());
        assert!(asm.is_waiting());
        assert!(asm.push(vec![1]).unwrap().is_none());
        let (packet, frames) = asm.push(vec![2, 3]).unwrap().unwrap();
        assert_eq!(frames, vec![vec![1], vec![2, 3]]);
        assert!(!asm.is_waiting());

        let mut value: Value = serde_json::from_str(packet.data.unwrap().get()).unwrap();
        fill_placeholders(&mut value, &frames, &|b| json!(b.len())).unwrap();
        assert_eq!(value, json!(["f", 1, 2]));
    }

    #[test]
    fn assembler_rejects_stray_binary_frames() {
        let mut asm = BinaryAssembler::default();
        assert_eq!(asm.push(vec![1]).unwrap_err(), AssembleError::Unexpected);
    }

    #[test]
    fn assembler_reports_an_interrupted_packet() {
        let mut asm = BinaryAssembler::default();
        let p = Packet::decode(r#"51-["f",{"_placeholder":true,"num":0}]"#).unwrap();
        asm.start(p.to_owned_packet()).unwrap();
        assert_eq!(
            asm.start(p.to_owned_packet()).unwrap_err(),
            AssembleError::Interrupted
        );
        asm.reset();
        assert!(!asm.is_waiting());
    }

    #[test]
    fn assembler_caps_the_bytes_of_pending_attachments() {
        let p = Packet::decode(
            r#"53-["f",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]"#,
        )
        .unwrap();
        let mut asm = BinaryAssembler::new(10);
        asm.start(p.to_owned_packet()).unwrap();
        assert!(asm.push(vec![0; 6]).unwrap().is_none());
        assert_eq!(asm.held_bytes(), 6);
        assert_eq!(
            asm.push(vec![0; 5]).unwrap_err(),
            AssembleError::TooLarge { size: 11, max: 10 }
        );
        // The packet is gone, nothing is held, the next frame is stray.
        assert!(!asm.is_waiting());
        assert_eq!(asm.held_bytes(), 0);
        assert_eq!(asm.push(vec![1]).unwrap_err(), AssembleError::Unexpected);

        // Exactly the cap is accepted, and the count starts over per packet.
        asm.start(p.to_owned_packet()).unwrap();
        asm.push(vec![0; 4]).unwrap();
        asm.push(vec![0; 4]).unwrap();
        let (_, frames) = asm.push(vec![0; 2]).unwrap().unwrap();
        assert_eq!(frames.iter().map(Vec::len).sum::<usize>(), 10);
        assert_eq!(asm.held_bytes(), 0);
        asm.start(p.to_owned_packet()).unwrap();
        asm.push(vec![0; 10]).unwrap();
        assert_eq!(BinaryAssembler::default().max_bytes(), 16 << 20);
    }

    #[test]
    fn placeholder_out_of_range_is_an_error() {
        let mut v = json!([placeholder(3)]);
        assert_eq!(
            fill_placeholders(&mut v, &[vec![]], &|_| Value::Null),
            Err(PlaceholderError::OutOfRange { num: 3, count: 1 })
        );
    }

    fn arb_kind() -> impl Strategy<Value = PacketKind> {
        prop_oneof![
            Just(PacketKind::Event),
            Just(PacketKind::Ack),
            Just(PacketKind::BinaryEvent),
            Just(PacketKind::BinaryAck),
        ]
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{0,5}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in ".*") {
            let _ = Packet::decode(&s);
        }

        #[test]
        fn decode_never_panics_on_structured_garbage(
            kind in 0u8..10, ns in "(/[a-z]{0,4},)?", id in "[0-9]{0,3}", rest in ".{0,20}"
        ) {
            let s = format!("{kind}{ns}{id}{rest}");
            let _ = Packet::decode(&s);
        }

        #[test]
        fn events_round_trip(
            kind in arb_kind(),
            ns in prop_oneof![Just("/".to_string()), "/[a-z]{1,6}"],
            id in proptest::option::of(any::<u32>()),
            name in ".{0,10}",
            args in prop::collection::vec(arb_json(), 0..3),
            attachments in 1u32..4,
        ) {
            let mut arr = vec![Value::String(name.clone())];
            arr.extend(args);
            let is_ack = matches!(kind, PacketKind::Ack | PacketKind::BinaryAck);
            let id = if is_ack { Some(id.unwrap_or(0) as u64) } else { id.map(u64::from) };
            let data = Value::Array(arr).to_string();
            let attachments = if kind.is_binary() { attachments } else { 0 };
            let encoded = encode_raw(kind, &ns, id, attachments, Some(&data));
            let p = Packet::decode(&encoded).unwrap();
            prop_assert_eq!(p.kind, kind);
            prop_assert_eq!(p.namespace, ns.as_str());
            prop_assert_eq!(p.id, id);
            prop_assert_eq!(p.attachments, attachments);
            let back: Value = serde_json::from_str(p.data.unwrap().get()).unwrap();
            let orig: Value = serde_json::from_str(&data).unwrap();
            prop_assert_eq!(back, orig);
            prop_assert_eq!(p.encode(), encoded);
        }

        #[test]
        fn event_ref_agrees_with_packet_decode(s in "2(/[a-z]{1,3},)?[0-9]{0,2}\\[.{0,30}") {
            match (EventRef::decode(&s), Packet::decode(&s)) {
                (Ok(fast), Ok(full)) => {
                    let (name, args) = full.event().unwrap();
                    prop_assert_eq!(fast.name, name);
                    prop_assert_eq!(fast.id, full.id);
                    prop_assert_eq!(fast.first_arg.map(RawValue::get), args.first().map(|a| a.get()));
                }
                (Err(_), Err(_)) => {}
                (fast, full) => prop_assert!(false, "disagree on {s:?}: {fast:?} vs {full:?}"),
            }
        }

        #[test]
        fn single_argument_events_round_trip(name in ".{1,20}", arg in arb_json()) {
            let encoded = encode_event("/", None, &name, &arg).unwrap();
            let p = Packet::decode(&encoded).unwrap();
            let (got_name, args) = p.event().unwrap();
            prop_assert_eq!(got_name.as_ref(), name.as_str());
            let back: Value = serde_json::from_str(args[0].get()).unwrap();
            prop_assert_eq!(back, arg);
        }
    }
}
