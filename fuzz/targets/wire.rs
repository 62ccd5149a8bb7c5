//! The wire fuzz targets' bodies, shared by the `cargo fuzz` binaries
//! (`fuzz/fuzz_targets/`) and the corpus replay test
//! (`actors/tests/it/fuzz_corpus.rs`, a normal test CI runs).
//!
//! Every decoder must turn any input into a value or an error — never a
//! panic, never a hang, never an allocation out of proportion to the input
//! (libFuzzer's `-rss_limit_mb` / `-malloc_limit_mb` catch those) — and
//! what decodes must encode back to something that decodes to the same.

use volt_protocol::engineio;
use volt_protocol::socketio::{self, BinaryAssembler, EventRef, Packet};

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Engine.IO text frames.
pub fn engineio(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Ok(p) = engineio::Packet::decode(s) {
        // The message body of a `4…` frame is what the socket.io layer gets.
        if let engineio::Packet::Message(m) = p {
            socketio_text(m);
        }
        if let engineio::Packet::Ping(d) = p {
            let pong = engineio::pong_for(d);
            assert!(matches!(
                engineio::Packet::decode(&pong),
                Ok(engineio::Packet::Pong(back)) if back == d
            ));
        }
    }
}

fn socketio_text(s: &str) {
    let full = Packet::decode(s);
    match (&full, EventRef::decode(s)) {
        // The one-pass event decoder agrees with the general one.
        (Ok(p), Ok(e)) => {
            let (name, args) = p.event().expect("an EVENT the fast path took");
            assert_eq!(e.name, name);
            assert_eq!(e.id, p.id);
            assert_eq!(e.namespace, p.namespace);
            assert_eq!(e.first_arg.map(|a| a.get()), args.first().map(|a| a.get()));
        }
        (Err(_), Ok(e)) => panic!("EventRef accepted what Packet refused: {s:?} → {e:?}"),
        _ => {}
    }
    if let Ok(p) = full {
        // Encoding gives a packet that decodes to the same.
        let again = p.encode();
        let back = Packet::decode(&again).expect("an encoded packet decodes");
        assert_eq!(back, p, "{s:?} → {again:?}");
        let _ = p.connect_error_message();
        let _ = p.args();
    }
}

/// Socket.IO packets, plus binary reassembly: the input is a packet, then
/// binary frames (split at 0xff bytes) fed to a small assembler whose cap
/// must hold.
pub fn socketio(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0xff);
    let Some(head) = parts.next().and_then(text) else {
        return;
    };
    socketio_text(head);
    let Ok(p) = Packet::decode(head) else { return };
    const CAP: usize = 4096;
    let mut asm = BinaryAssembler::new(CAP);
    let Ok(started) = asm.start(p.to_owned_packet()) else {
        return;
    };
    let mut assembled = started;
    for frame in parts {
        if assembled.is_some() {
            break;
        }
        match asm.push(frame.to_vec()) {
            Ok(a) => assembled = a,
            Err(_) => return,
        }
        assert!(asm.held_bytes() <= CAP);
    }
    if let Some((packet, frames)) = assembled {
        assert!(frames.iter().map(Vec::len).sum::<usize>() <= CAP);
        if let Some(d) = packet.data.as_ref()
            && let Ok(mut v) = serde_json::from_str::<serde_json::Value>(d.get())
        {
            let _ =
                socketio::fill_placeholders(&mut v, &frames, &|b| serde_json::Value::from(b.len()));
        }
    }
}

/// VOLT envelopes (`team-cluster-daemon:message` payloads).
pub fn envelope(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let Ok(msg) = volt_protocol::Message::decode(s) else {
        return;
    };
    let _ = msg.type_str();
    // What decodes encodes, and the encoding decodes to the same message.
    let json = serde_json::to_string(&msg).expect("a decoded message encodes");
    let back = volt_protocol::Message::decode(&json)
        .unwrap_or_else(|e| panic!("{json} does not decode: {e}"));
    let again = serde_json::to_string(&back).expect("encodes");
    // Equal as JSON (key order may differ).
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&json).expect("JSON"),
        serde_json::from_str(&again).expect("JSON"),
    );
    assert_eq!(a, b, "not stable through a round trip: {json} → {again}");
    let frame = volt_protocol::encode_message_frame(&msg).expect("a frame");
    assert!(frame.starts_with("42[\"team-cluster-daemon:message\","));
}
