// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0's control socket protocol (docs/CONTROL-PROTOCOL.md).
//!
//! One request per connection. The client writes one line of printable ASCII,
//! `VERB [ROOM]\n`, at most [`REQUEST_MAX`] bytes with the newline, within
//! [`REQUEST_TIMEOUT_MS`] of connecting. bay0 answers with zero or more record lines
//! (`room k=v ...`, `host k=v ...`) and one final line, `ok [text]` or `err text`, then
//! closes the connection. The exception is `console`: after its `ok` line the connection
//! carries the room's rendered console output (bay0 -> client) and raw keyboard input
//! (client -> bay0) until either side closes it.
//!
//! Record values never contain spaces or `=`: bay0 writes only numbers, room names and
//! fixed words into them.

/// Where bay0 listens (mode 0600, root only).
pub const SOCKET_PATH: &str = "/run/anchor/control.sock";
/// Longest request line, newline included.
pub const REQUEST_MAX: usize = 128;
/// Longest reply line, newline included.
pub const REPLY_LINE_MAX: usize = 512;
/// Most control connections bay0 serves at once (console attachments included); more are
/// answered `err busy ...` and closed at once.
pub const MAX_CLIENTS: usize = 16;
/// A client that has not sent its whole request line by then is disconnected.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// The key that detaches a console (Ctrl-]), handled by the client (anchorctl) and by
/// bay0 on its own console.
pub const DETACH_KEY: u8 = 0x1d;

/// What a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Every room and the host's memory (no room argument).
    List,
    /// Open a room; answered once its agent reports ready (or it failed).
    Start,
    /// Close a room.
    Stop,
    /// Close a room and open it again from its pristine image.
    Reset,
    /// Attach to a room's console.
    Console,
}

impl Verb {
    /// The verb as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::List => "list",
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Reset => "reset",
            Verb::Console => "console",
        }
    }

    fn parse(word: &str) -> Option<Verb> {
        Some(match word {
            "list" => Verb::List,
            "start" => Verb::Start,
            "stop" => Verb::Stop,
            "reset" => Verb::Reset,
            "console" => Verb::Console,
            _ => return None,
        })
    }

    /// What a room a client waits on after this verb has failed to do in time (the
    /// answer bay0 gives when the wait runs out): a stop waits for the room's end, a
    /// start or reset for its agent's ready.
    pub fn overdue(self) -> &'static str {
        match self {
            Verb::Stop => "its agent has not ended within 180 s",
            _ => "its agent did not report ready within 180 s",
        }
    }

    /// Whether the verb names a room.
    pub fn takes_room(self) -> bool {
        !matches!(self, Verb::List)
    }
}

/// A parsed request; `room` is empty for [`Verb::List`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub verb: Verb,
    pub room: &'a str,
}

/// Why a request line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    Empty,
    TooLong,
    NotText,
    UnknownVerb,
    MissingRoom,
    ExtraArgument,
    BadRoomName,
}

impl RequestError {
    /// The reason, as sent back in the `err` line.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestError::Empty => "empty request",
            RequestError::TooLong => "request line too long (at most 127 bytes)",
            RequestError::NotText => "request is not printable ASCII",
            RequestError::UnknownVerb => {
                "unknown request (list, start ROOM, stop ROOM, reset ROOM, console ROOM)"
            }
            RequestError::MissingRoom => "this request needs a room name",
            RequestError::ExtraArgument => "unexpected argument",
            RequestError::BadRoomName => "invalid room name (1-32 of a-z 0-9 -)",
        }
    }
}

impl core::fmt::Display for RequestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses one request line (without its newline). Never allocates.
pub fn parse_request(line: &[u8]) -> Result<Request<'_>, RequestError> {
    if line.len() >= REQUEST_MAX {
        return Err(RequestError::TooLong);
    }
    if !line.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(RequestError::NotText);
    }
    let text = core::str::from_utf8(line).map_err(|_| RequestError::NotText)?;
    let mut words = text.split(' ').filter(|w| !w.is_empty());
    let verb = words.next().ok_or(RequestError::Empty)?;
    let verb = Verb::parse(verb).ok_or(RequestError::UnknownVerb)?;
    let room = if verb.takes_room() {
        let room = words.next().ok_or(RequestError::MissingRoom)?;
        if !crate::name::is_valid(room) {
            return Err(RequestError::BadRoomName);
        }
        room
    } else {
        ""
    };
    if words.next().is_some() {
        return Err(RequestError::ExtraArgument);
    }
    Ok(Request { verb, room })
}

/// The request line for `verb` and `room` (client side), newline included.
pub fn format_request(verb: Verb, room: &str) -> String {
    if verb.takes_room() {
        format!("{} {room}\n", verb.as_str())
    } else {
        format!("{}\n", verb.as_str())
    }
}

/// One reply line, decoded (client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `KIND k=v k=v ...`
    Record {
        kind: String,
        fields: Vec<(String, String)>,
    },
    /// `ok [text]`: the request succeeded.
    Ok(String),
    /// `err text`: it did not, and why.
    Err(String),
}

/// Decodes one reply line (without its newline); `None` when it is malformed.
pub fn parse_reply(line: &str) -> Option<Reply> {
    if line.len() >= REPLY_LINE_MAX {
        return None;
    }
    let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
    match head {
        "ok" => Some(Reply::Ok(rest.to_string())),
        "err" => Some(Reply::Err(rest.to_string())),
        kind if !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase()) => {
            let mut fields = Vec::new();
            for pair in rest.split(' ').filter(|w| !w.is_empty()) {
                let (k, v) = pair.split_once('=')?;
                if k.is_empty() || v.contains('=') {
                    return None;
                }
                fields.push((k.to_string(), v.to_string()));
            }
            Some(Reply::Record {
                kind: kind.to_string(),
                fields,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse_request(b"list"),
            Ok(Request {
                verb: Verb::List,
                room: ""
            })
        );
        assert_eq!(
            parse_request(b"start web"),
            Ok(Request {
                verb: Verb::Start,
                room: "web"
            })
        );
        assert_eq!(parse_request(b"  reset   dev-2 ").unwrap().room, "dev-2");
    }

    #[test]
    fn hostile_requests_are_refused_with_a_reason() {
        let long = vec![b'a'; REQUEST_MAX];
        for (line, want) in [
            (&b""[..], RequestError::Empty),
            (b"   ", RequestError::Empty),
            (&long, RequestError::TooLong),
            (b"start web\r", RequestError::NotText),
            (b"start \xc3\xa9", RequestError::NotText),
            (b"start w\0b", RequestError::NotText),
            (b"LIST", RequestError::UnknownVerb),
            (b"shutdown", RequestError::UnknownVerb),
            (b"start", RequestError::MissingRoom),
            (b"list web", RequestError::ExtraArgument),
            (b"stop web work", RequestError::ExtraArgument),
            (b"start ../etc", RequestError::BadRoomName),
            (b"start Web", RequestError::BadRoomName),
            (b"console -x", RequestError::BadRoomName),
        ] {
            assert_eq!(parse_request(line), Err(want), "{line:?}");
        }
    }

    #[test]
    fn requests_round_trip() {
        for verb in [
            Verb::List,
            Verb::Start,
            Verb::Stop,
            Verb::Reset,
            Verb::Console,
        ] {
            let line = format_request(verb, "work");
            let parsed = parse_request(line.trim_end().as_bytes()).unwrap();
            assert_eq!(parsed.verb, verb);
        }
    }

    #[test]
    fn replies_parse() {
        assert_eq!(
            parse_reply("room name=web state=running pid=7"),
            Some(Reply::Record {
                kind: "room".into(),
                fields: vec![
                    ("name".into(), "web".into()),
                    ("state".into(), "running".into()),
                    ("pid".into(), "7".into())
                ]
            })
        );
        assert_eq!(parse_reply("ok"), Some(Reply::Ok(String::new())));
        assert_eq!(
            parse_reply("err room web: already running"),
            Some(Reply::Err("room web: already running".into()))
        );
        for bad in ["", "Room x=1", "room x", "room =1", "room a=b=c"] {
            assert_eq!(parse_reply(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(line in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(r) = parse_request(&line) {
                prop_assert!(line.len() < REQUEST_MAX);
                prop_assert!(r.room.is_empty() || crate::name::is_valid(r.room));
            }
        }

        #[test]
        fn any_text_reply_parses_or_is_rejected(line in ".{0,600}") {
            let _ = parse_reply(&line);
        }
    }
}
