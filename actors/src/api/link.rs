//! The outbound half of a registered control connection.
//!
//! A [`Link`] exists only while the socket is connected *and* registered.
//! Every frame goes through one bounded queue to the connection's writer,
//! which batches whatever is queued into a single flush. The bound is the
//! backpressure: a stream reply on a slow link waits here instead of growing
//! memory.

use actix::Message as ActixMessage;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use volt_protocol::Message;

/// Frames queued towards the writer. Enough for the writer to batch many
/// small responses into one flush under load, small enough that a queue of
/// stream chunks (64 KiB of data each) stays a few megabytes.
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

/// Handle for sending on the current registered connection.
#[derive(Debug, Clone)]
pub struct Link {
    connection: u64,
    tx: mpsc::Sender<WsMessage>,
    max_payload: usize,
}

impl Link {
    pub fn new(connection: u64, tx: mpsc::Sender<WsMessage>, max_payload: usize) -> Self {
        Link {
            connection,
            tx,
            max_payload,
        }
    }

    /// Which connection (a counter per daemon run) this link belongs to.
    pub fn connection(&self) -> u64 {
        self.connection
    }

    /// The server's `maxPayload`: no frame may be larger.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Whether the connection behind this link is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
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

    /// Sends `msg`, waiting for room in the queue (backpressure).
    pub async fn send(&self, msg: &Message) -> Result<(), LinkError> {
        let frame = self.encode(msg)?;
        self.send_frame(frame).await
    }

    /// Sends `msg` if there is room right now.
    pub fn try_send(&self, msg: &Message) -> Result<(), LinkError> {
        let frame = self.encode(msg)?;
        self.try_send_frame(frame)
    }

    /// Sends an already encoded text frame, waiting for room.
    pub async fn send_frame(&self, frame: String) -> Result<(), LinkError> {
        self.tx
            .send(WsMessage::text(frame))
            .await
            .map_err(|_| LinkError::Closed)
    }

    /// Sends an already encoded text frame if there is room right now.
    pub fn try_send_frame(&self, frame: String) -> Result<(), LinkError> {
        self.tx
            .try_send(WsMessage::text(frame))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LinkError::Full,
                mpsc::error::TrySendError::Closed(_) => LinkError::Closed,
            })
    }

    /// Queues a WebSocket close frame: the writer sends it and ends.
    pub async fn send_close(&self) {
        let _ = self.tx.send(WsMessage::Close(None)).await;
    }

    /// Frames currently queued (for diagnostics).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity().saturating_sub(self.tx.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volt_protocol::envelope::ResponseMessage;

    #[tokio::test]
    async fn frames_reach_the_writer_in_order() {
        let (tx, mut rx) = mpsc::channel(4);
        let link = Link::new(7, tx, 1_000_000);
        link.send(&Message::Response(ResponseMessage::success(
            "a",
            serde_json::json!(1),
        )))
        .await
        .unwrap();
        link.try_send(&Message::Response(ResponseMessage::success(
            "b",
            serde_json::json!(2),
        )))
        .unwrap();
        let first = rx.recv().await.unwrap().into_text().unwrap();
        assert!(first.as_str().contains(r#""requestId":"a""#));
        let second = rx.recv().await.unwrap().into_text().unwrap();
        assert!(second.as_str().contains(r#""requestId":"b""#));
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
}
