//! The terminal helper's wire: one JSON object per line over a Unix
//! stream socket, in both directions. Pure codec, no I/O.
//!
//! ```text
//! voltd  → helper   {"op":"open"}                      once, first
//! helper → voltd    {"type":"opened","pid":N,"user":"volt-terminal"}   + the PTY master (SCM_RIGHTS)
//!                   {"type":"refused","status":403,"message":"…"}      and the helper exits
//! helper → voltd    {"type":"exited","code":0|null}     when the shell ended
//! voltd  → helper   {"op":"hangup"}                     SIGHUP (+SIGCONT) to the session
//!                   {"op":"kill"}                       SIGKILL to the session and the tty's holders
//! voltd closes      the helper hangs the session up, waits KILL_GRACE, kills what is left, reaps, exits
//! ```
//!
//! The master descriptor travels with the `opened` line, so voltd reads,
//! writes and resizes the PTY itself; the helper only owns the processes.

use serde::{Deserialize, Serialize};

/// Longest line either side accepts.
pub const MAX_LINE: usize = 4096;

/// voltd → helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Open,
    Hangup,
    Kill,
}

/// helper → voltd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Reply {
    Opened { pid: i32, user: String },
    Refused { status: u16, message: String },
    Exited { code: Option<i32> },
}

/// One message as a line (`\n`-terminated).
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Splits complete lines off the front of `buf`; `Err` when a line is
/// longer than [`MAX_LINE`].
pub fn take_lines(buf: &mut Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
    let mut lines = Vec::new();
    while let Some(i) = buf.iter().position(|b| *b == b'\n') {
        let rest = buf.split_off(i + 1);
        let mut line = std::mem::replace(buf, rest);
        line.pop();
        lines.push(line);
    }
    if buf.len() > MAX_LINE {
        return Err(format!("a line of more than {MAX_LINE} bytes"));
    }
    Ok(lines)
}

pub fn decode<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(line).map_err(|e| format!("invalid terminal helper message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_lines() {
        assert_eq!(encode(&Request::Open), b"{\"op\":\"open\"}\n");
        assert_eq!(
            encode(&Reply::Exited { code: Some(3) }),
            b"{\"type\":\"exited\",\"code\":3}\n"
        );
        let mut buf = b"{\"op\":\"hangup\"}\n{\"op\":\"kill\"}\n{\"op\"".to_vec();
        let lines = take_lines(&mut buf).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(decode::<Request>(&lines[0]).unwrap(), Request::Hangup);
        assert_eq!(decode::<Request>(&lines[1]).unwrap(), Request::Kill);
        assert_eq!(buf, b"{\"op\"");
        assert!(decode::<Request>(b"{\"op\":\"exec\"}").is_err());
        let mut long = vec![b'x'; MAX_LINE + 1];
        assert!(take_lines(&mut long).is_err());
    }
}
