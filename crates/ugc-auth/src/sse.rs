//! A sans-IO parser of `text/event-stream` (Server-Sent Events): bytes in,
//! events out. Follows the WHATWG event-stream interpretation: lines end
//! with CRLF, LF or CR; a blank line dispatches; `:` starts a comment;
//! `data` lines accumulate; `id` persists across events.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// `event:` (default `message`).
    pub(crate) event: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
    /// The last event id seen so far (persists across events).
    pub(crate) id: Option<String>,
}

/// The parser state.
#[derive(Debug)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    data: String,
    event: String,
    id: Option<String>,
    after_cr: bool,
    max: usize,
}

/// A line or an event went past the size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLong;

impl SseParser {
    /// A parser that refuses lines and events longer than `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        SseParser {
            line: Vec::new(),
            data: String::new(),
            event: String::new(),
            id: None,
            after_cr: false,
            max,
        }
    }

    /// Feeds bytes; complete events are appended to `out`.
    pub(crate) fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), TooLong> {
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(out)?,
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(out)?;
                }
                _ => {
                    if self.line.len() >= self.max {
                        return Err(TooLong);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), TooLong> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.first() == Some(&b':') {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        match field {
            "data" => {
                if self.data.len().saturating_add(value.len()) >= self.max {
                    return Err(TooLong);
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "event" => self.event = value.to_owned(),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        out.push(SseEvent {
            event: if event.is_empty() {
                "message".into()
            } else {
                event
            },
            data,
            id: self.id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new(1 << 16);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn events_fields_comments_and_line_ends() {
        let s = b"retry: 1000\n\n: keep-alive\n\nid: e-1\nevent: change\ndata: {\"a\":1}\n\n\
                  data:x\r\ndata: y\r\rid: e-2\nevent: snapshot\ndata\n\n";
        let ev = parse_all(&[s]);
        assert_eq!(
            ev,
            vec![
                SseEvent {
                    event: "change".into(),
                    data: "{\"a\":1}".into(),
                    id: Some("e-1".into())
                },
                SseEvent {
                    event: "message".into(),
                    data: "x\ny".into(),
                    id: Some("e-1".into())
                },
                SseEvent {
                    event: "snapshot".into(),
                    data: String::new(),
                    id: Some("e-2".into())
                },
            ]
        );
    }

    #[test]
    fn incomplete_event_waits_and_cap_holds() {
        let mut p = SseParser::new(16);
        let mut out = Vec::new();
        p.feed(b"data: abc\n", &mut out).unwrap();
        assert!(out.is_empty(), "no blank line yet");
        p.feed(b"\n", &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(p.feed(&[b'x'; 17], &mut out), Err(TooLong));
    }

    proptest! {
        #[test]
        fn split_anywhere_same_events(s in "(id: [a-z0-9-]{0,6}\r?\n|data: [ -~]{0,10}(\r\n|\n|\r)|event: [a-z]{0,5}\n|: c\n|\n){0,12}", cut in 0usize..200) {
            let b = s.as_bytes();
            let cut = cut.min(b.len());
            let whole = parse_all(&[b]);
            let (x, y) = b.split_at(cut);
            prop_assert_eq!(parse_all(&[x, y]), whole);
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut p = SseParser::new(64);
            let mut out = Vec::new();
            let _ = p.feed(&b, &mut out);
        }
    }
}
