//! The outbound half of a registered control connection.
//!
//! A [`Link`] exists only while the socket is connected *and* registered.
//! Frames go to the connection's writer through two bounded queues, the
//! **lanes** ([`Lane`]):
//!
//! * **control** — pongs, acks, command replies, the daemon's own commands
//!   (heartbeats, lifecycle reports), events;
//! * **bulk** — the data of stream replies and terminal sessions
//!   (`stream`, `stream-end`, `session-data`, `session-end`, tunnel data)
//!   and replies too large to be sent quickly ([`CONTROL_FRAME_MAX`]).
//!
//! The writer ([`Lanes`]) always takes control frames first and lets
//! only about one bulk frame into each write, so a pong or a heartbeat
//! waits at most for the bulk frame already being written, never for a
//! queue of them: on a 1 Mbit/s uplink a 20 MB download cannot hold a pong
//! past the server's ping timeout. Senders pick nothing: [`Link::send`]
//! chooses the lane from the message, so the terminal pump and stream
//! replies use the same calls as everyone else.
//!
//! Order is kept where it matters: within a lane frames leave in the order
//! they were queued (a session's `session-end` follows its data, a
//! stream's `stream-end` its chunks), and a stream's first reply (control)
//! always leaves before its chunks (bulk), because the writer drains the
//! control lane before it lets out a bulk frame it has taken.
//!
//! The bounds are the backpressure: a stream on a slow link waits here
//! instead of growing memory.

use actix::Message as ActixMessage;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use volt_protocol::Message;

/// Frames queued in the control lane. Control frames are small; 256 lets
/// the writer batch a burst of replies into one write and still bounds a
/// server that floods commands (the reader then waits, and so does the
/// server).
pub const CONTROL_QUEUE: usize = 256;
/// Frames queued in the bulk lane: enough for the writer to never starve
/// on a fast link, small enough that a queue of stream chunks (64 KiB of
/// data each) stays a few megabytes.
pub const BULK_QUEUE: usize = 64;
/// Bulk frames (by size) the writer lets into one write: one chunk. A
/// control frame queued meanwhile waits for at most this much bulk.
pub const BULK_BYTES_PER_WRITE: usize = 64 * 1024;
/// A reply frame larger than this goes in the bulk lane: at 1 Mbit/s it
/// would hold the control lane for half a second or more (a `buffer` reply
/// can be as large as `maxPayload`).
pub const CONTROL_FRAME_MAX: usize = 64 * 1024;
/// Frames of the single queue of [`Link::new`] (tests, simple callers).
pub const OUTBOUND_QUEUE: usize = 64;

/// What the control socket tells the dispatcher.
#[derive(ActixMessage, Debug)]
#[rtype(result = "()")]
pub enum SocketEvent {
    /// A registered connection is available.
    Up(Link),
    /// Connection `connection` (and every earlier one) is gone.
    Down { connection: u64 },
    /// One inbound envelope.
    Message(Message),
    /// An envelope that did not decode; answered with 400 when it is a
    /// command whose `requestId` can still be read.
    Invalid { raw: String, error: String },
}

/// Why a frame was not sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkError {
    #[error("control socket is not connected")]
    Closed,
    #[error("outbound queue is full")]
    Full,
    #[error("message of {len} bytes exceeds the server's maxPayload of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// The two outbound queues (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Control,
    Bulk,
}

impl Lane {
    /// The lane of `msg`, encoded into a frame of `frame_len` bytes.
    pub fn of(msg: &Message, frame_len: usize) -> Lane {
        match msg {
            Message::Stream(_)
            | Message::StreamEnd(_)
            | Message::SessionData(_)
            | Message::SessionEnd(_)
            | Message::TunnelData(_)
            | Message::TunnelDrain(_)
            | Message::TunnelClose(_) => Lane::Bulk,
            // Replies answer distinct requests, so a large one may take the
            // bulk lane without reordering anything that matters. Other
            // control messages (reports, progress) keep their order.
            Message::Response(_) if frame_len > CONTROL_FRAME_MAX => Lane::Bulk,
            _ => Lane::Control,
        }
    }
}

/// Handle for sending on the current registered connection.
#[derive(Debug, Clone)]
pub struct Link {
    connection: u64,
    control: mpsc::Sender<WsMessage>,
    bulk: mpsc::Sender<WsMessage>,
    max_payload: usize,
}

impl Link {
    /// A link whose two lanes feed one queue, in the order frames are
    /// sent: for tests and callers that read the frames themselves.
    pub fn new(connection: u64, tx: mpsc::Sender<WsMessage>, max_payload: usize) -> Self {
        Link {
            connection,
            control: tx.clone(),
            bulk: tx,
            max_payload,
        }
    }

    /// A link with its two lanes and the writer's end of them.
    pub fn with_lanes(connection: u64, max_payload: usize) -> (Link, Lanes) {
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let (bulk, bulk_rx) = mpsc::channel(BULK_QUEUE);
        let link = Link {
            connection,
            control,
            bulk,
            max_payload,
        };
        (link, Lanes::new(control_rx, bulk_rx))
    }

    /// Which connection (a counter per daemon run) this link belongs to.
    pub fn connection(&self) -> u64 {
        self.connection
    }

    /// The server's `maxPayload` (clamped by the control socket): no frame
    /// may be larger.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Whether the connection behind this link is gone.
    pub fn is_closed(&self) -> bool {
        self.control.is_closed() || self.bulk.is_closed()
    }

    fn lane(&self, lane: Lane) -> &mpsc::Sender<WsMessage> {
        match lane {
            Lane::Control => &self.control,
            Lane::Bulk => &self.bulk,
        }
    }

    /// Encodes `msg` into a frame, checking it against `maxPayload`.
    pub fn encode(&self, msg: &Message) -> Result<String, LinkError> {
        let frame = volt_protocol::encode_message_frame(msg)
            .map_err(|e| LinkError::Encode(e.to_string()))?;
        // The frame text minus its Engine.IO type digit is the packet the
        // server measures against maxPayload; checking the whole frame is
        // one byte stricter and simpler.
        if frame.len() > self.max_payload {
            return Err(LinkError::TooLarge {
                len: frame.len(),
                max: self.max_payload,
            });
        }
        Ok(frame)
    }

    /// Sends `msg` in its lane, waiting for room (backpressure).
    pub async fn send(&self, msg: &Message) -> Result<(), LinkError> {
        let frame = self.encode(msg)?;
        let lane = Lane::of(msg, frame.len());
        self.send_frame_on(lane, frame).await
    }

    /// Sends `msg` in its lane if there is room right now.
    pub fn try_send(&self, msg: &Message) -> Result<(), LinkError> {
        let frame = self.encode(msg)?;
        let lane = Lane::of(msg, frame.len());
        self.try_send_frame_on(lane, frame)
    }

    /// Sends an already encoded control frame, waiting for room.
    pub async fn send_frame(&self, frame: String) -> Result<(), LinkError> {
        self.send_frame_on(Lane::Control, frame).await
    }

    /// Sends an already encoded control frame if there is room right now.
    pub fn try_send_frame(&self, frame: String) -> Result<(), LinkError> {
        self.try_send_frame_on(Lane::Control, frame)
    }

    /// Sends an already encoded frame in `lane`, waiting for room.
    pub async fn send_frame_on(&self, lane: Lane, frame: String) -> Result<(), LinkError> {
        self.lane(lane)
            .send(WsMessage::text(frame))
            .await
            .map_err(|_| LinkError::Closed)
    }

    /// Sends an already encoded frame in `lane` if there is room right now.
    pub fn try_send_frame_on(&self, lane: Lane, frame: String) -> Result<(), LinkError> {
        self.lane(lane)
            .try_send(WsMessage::text(frame))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LinkError::Full,
                mpsc::error::TrySendError::Closed(_) => LinkError::Closed,
            })
    }

    /// Queues a WebSocket close frame (control lane): the writer sends it
    /// and ends.
    pub async fn send_close(&self) {
        let _ = self.control.send(WsMessage::Close(None)).await;
    }

    /// Frames currently queued in both lanes (for diagnostics).
    pub fn queued(&self) -> usize {
        let used = |tx: &mpsc::Sender<WsMessage>| tx.max_capacity().saturating_sub(tx.capacity());
        if self.control.same_channel(&self.bulk) {
            used(&self.control)
        } else {
            used(&self.control) + used(&self.bulk)
        }
    }
}

/// The writer's end of a [`Link`]'s lanes: hands out frames in priority
/// order (see the module docs).
#[derive(Debug)]
pub struct Lanes {
    control: mpsc::Receiver<WsMessage>,
    bulk: mpsc::Receiver<WsMessage>,
    /// A bulk frame taken from its queue, let out once the control lane
    /// is empty (this is what keeps a stream's start before its chunks).
    held: Option<WsMessage>,
    control_open: bool,
    bulk_open: bool,
}

impl Lanes {
    fn new(control: mpsc::Receiver<WsMessage>, bulk: mpsc::Receiver<WsMessage>) -> Self {
        Lanes {
            control,
            bulk,
            held: None,
            control_open: true,
            bulk_open: true,
        }
    }

    /// The next frame, waiting for one; `None` once every sender is gone
    /// and nothing is left.
    pub async fn next(&mut self) -> Option<(Lane, WsMessage)> {
        loop {
            if let Some(ready) = self.ready(true) {
                return Some(ready);
            }
            if !self.control_open && !self.bulk_open {
                return None;
            }
            tokio::select! {
                biased;
                c = self.control.recv(), if self.control_open => match c {
                    Some(c) => return Some((Lane::Control, c)),
                    None => self.control_open = false,
                },
                b = self.bulk.recv(), if self.bulk_open => match b {
                    // Not returned yet: control frames queued before it
                    // go first (the loop's `ready`).
                    Some(b) => self.held = Some(b),
                    None => self.bulk_open = false,
                },
            }
        }
    }

    /// A frame that is ready now, control first; bulk only if
    /// `bulk_allowed`.
    pub fn ready(&mut self, bulk_allowed: bool) -> Option<(Lane, WsMessage)> {
        if self.control_open {
            match self.control.try_recv() {
                Ok(c) => return Some((Lane::Control, c)),
                Err(TryRecvError::Disconnected) => self.control_open = false,
                Err(TryRecvError::Empty) => {}
            }
        }
        if !bulk_allowed {
            return None;
        }
        if let Some(b) = self.held.take() {
            return Some((Lane::Bulk, b));
        }
        if self.bulk_open {
            match self.bulk.try_recv() {
                Ok(b) => {
                    // Anything queued in the control lane before this frame
                    // is visible now; it goes first.
                    if let Some(c) = self.ready(false) {
                        self.held = Some(b);
                        return Some(c);
                    }
                    return Some((Lane::Bulk, b));
                }
                Err(TryRecvError::Disconnected) => self.bulk_open = false,
                Err(TryRecvError::Empty) => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volt_protocol::envelope::{ResponseMessage, StreamChunk, StreamEnd};

    fn reply(id: &str) -> Message {
        Message::Response(ResponseMessage::success(id, serde_json::json!(1)))
    }

    fn chunk(n: usize) -> Message {
        Message::Stream(StreamChunk {
            request_id: "s".into(),
            stream_id: "s".into(),
            chunk_base64: format!("{n:0>4}"),
        })
    }

    fn text(m: WsMessage) -> String {
        m.into_text().unwrap().as_str().to_owned()
    }

    #[tokio::test]
    async fn frames_reach_the_writer_in_order() {
        let (tx, mut rx) = mpsc::channel(4);
        let link = Link::new(7, tx, 1_000_000);
        link.send(&reply("a")).await.unwrap();
        link.try_send(&reply("b")).unwrap();
        let first = text(rx.recv().await.unwrap());
        assert!(first.contains(r#""requestId":"a""#));
        let second = text(rx.recv().await.unwrap());
        assert!(second.contains(r#""requestId":"b""#));
        assert_eq!(link.connection(), 7);
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_before_sending() {
        let (tx, mut rx) = mpsc::channel(4);
        let link = Link::new(1, tx, 100);
        let big = Message::Response(ResponseMessage::success(
            "r",
            serde_json::json!("x".repeat(200)),
        ));
        assert!(matches!(
            link.try_send(&big),
            Err(LinkError::TooLarge { max: 100, .. })
        ));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn full_and_closed_queues_are_reported() {
        let (tx, rx) = mpsc::channel(1);
        let link = Link::new(1, tx, 1_000_000);
        link.try_send_frame("1".into()).unwrap();
        assert_eq!(link.try_send_frame("2".into()), Err(LinkError::Full));
        assert_eq!(link.queued(), 1);
        drop(rx);
        assert!(link.is_closed());
        assert_eq!(link.send_frame("3".into()).await, Err(LinkError::Closed));
    }

    #[test]
    fn data_goes_bulk_and_everything_else_control() {
        assert_eq!(Lane::of(&chunk(1), 100), Lane::Bulk);
        let end = Message::StreamEnd(StreamEnd {
            request_id: "s".into(),
            stream_id: "s".into(),
            message: None,
        });
        assert_eq!(Lane::of(&end, 100), Lane::Bulk);
        assert_eq!(Lane::of(&reply("r"), 100), Lane::Control);
        assert_eq!(Lane::of(&reply("r"), CONTROL_FRAME_MAX), Lane::Control);
        assert_eq!(Lane::of(&reply("r"), CONTROL_FRAME_MAX + 1), Lane::Bulk);
    }

    #[tokio::test]
    async fn control_frames_overtake_queued_bulk_frames() {
        let (link, mut lanes) = Link::with_lanes(1, 1_000_000);
        for n in 0..10 {
            link.send(&chunk(n)).await.unwrap();
        }
        link.send(&reply("pong-like")).await.unwrap();
        assert_eq!(link.queued(), 11);
        let (lane, first) = lanes.next().await.unwrap();
        assert_eq!(lane, Lane::Control);
        assert!(text(first).contains("pong-like"));
        // Then the chunks, in their order.
        for n in 0..10 {
            let (lane, f) = lanes.next().await.unwrap();
            assert_eq!(lane, Lane::Bulk);
            assert!(text(f).contains(&format!("{n:0>4}")));
        }
        assert!(lanes.ready(true).is_none());
    }

    #[tokio::test]
    async fn a_stream_start_leaves_before_its_chunks_even_when_bulk_was_taken_first() {
        let (link, mut lanes) = Link::with_lanes(1, 1_000_000);
        link.send(&chunk(0)).await.unwrap();
        // The writer takes the chunk out of its queue …
        let (lane, _) = lanes.ready(true).unwrap();
        assert_eq!(lane, Lane::Bulk);
        // … a start and its first chunk are queued; the start wins.
        link.send(&reply("start")).await.unwrap();
        link.send(&chunk(1)).await.unwrap();
        assert!(text(lanes.next().await.unwrap().1).contains("start"));
        assert!(text(lanes.next().await.unwrap().1).contains("0001"));

        // A bulk frame taken from its queue while a control frame waits is
        // held, not lost.
        link.send(&chunk(2)).await.unwrap();
        link.send(&reply("late")).await.unwrap();
        assert!(text(lanes.ready(false).unwrap().1).contains("late"));
        link.send(&reply("later")).await.unwrap();
        let (lane, f) = lanes.ready(true).unwrap();
        assert_eq!(lane, Lane::Control);
        assert!(text(f).contains("later"));
        assert!(text(lanes.ready(true).unwrap().1).contains("0002"));
    }

    #[tokio::test]
    async fn the_writer_end_sees_every_frame_then_none() {
        let (link, mut lanes) = Link::with_lanes(1, 1_000_000);
        link.send(&chunk(0)).await.unwrap();
        link.send(&reply("r")).await.unwrap();
        drop(link);
        assert_eq!(lanes.next().await.unwrap().0, Lane::Control);
        assert_eq!(lanes.next().await.unwrap().0, Lane::Bulk);
        assert!(lanes.next().await.is_none());
    }

    #[tokio::test]
    async fn a_full_bulk_lane_does_not_block_control() {
        let (link, _lanes) = Link::with_lanes(1, 1_000_000);
        for n in 0..BULK_QUEUE {
            link.try_send(&chunk(n)).unwrap();
        }
        assert_eq!(link.try_send(&chunk(0)), Err(LinkError::Full));
        link.try_send(&reply("still")).unwrap();
        assert_eq!(link.try_send_frame("3".into()), Ok(()));
    }
}
