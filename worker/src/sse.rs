//! A server-sent events decoder over bytes.
//!
//! Network chunks split wherever TCP pleases: in the middle of a multi-byte
//! character, between the `\r` and `\n` of a line end, inside a field name.
//! So nothing is decoded until a whole event (up to its blank line) has
//! arrived, and then as one unit. Line ends are `\r\n`, `\n` or `\r`, as the
//! HTML specification's event-stream grammar allows. Every size the sender
//! controls is capped: one event, and the whole reply.

/// The most a remote party may make us hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One event: every line from the first to the blank line that ends it.
    pub event_bytes: usize,
    /// The whole reply (a stream, or a unary response body).
    pub reply_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { event_bytes: 8 * 1024 * 1024, reply_bytes: 256 * 1024 * 1024 }
    }
}

/// Why a stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an SSE event exceeded {limit} bytes")]
    EventTooLarge { limit: usize },
    #[error("the reply exceeded {limit} bytes")]
    ReplyTooLarge { limit: usize },
    #[error("an SSE event is not valid UTF-8")]
    NotUtf8,
}

/// Feeds on chunks, yields the `data` of each complete event.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// Bytes not yet consumed as whole lines.
    pending: Vec<u8>,
    /// The current event's data lines, joined by `\n`, still bytes.
    data: Vec<u8>,
    has_data: bool,
    /// Bytes of the current event so far, the incomplete line included.
    event_size: usize,
    received: usize,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder { limits, pending: Vec::new(), data: Vec::new(), has_data: false, event_size: 0, received: 0 }
    }

    /// Takes the next chunk; returns the data of every event it completed.
    /// An event without data (a comment, a keep-alive, an `id:` alone) is
    /// not an event for us and yields nothing.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, SseError> {
        self.received += chunk.len();
        if self.received > self.limits.reply_bytes {
            return Err(SseError::ReplyTooLarge { limit: self.limits.reply_bytes });
        }
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(offset) = self.pending[start..].iter().position(|b| *b == b'\n' || *b == b'\r') {
            let end = start + offset;
            let skip = if self.pending[end] == b'\r' {
                match self.pending.get(end + 1) {
                    // A `\r` last in the buffer may be half of `\r\n`: wait.
                    None => break,
                    Some(b'\n') => 2,
                    Some(_) => 1,
                }
            } else {
                1
            };
            let line_start = start;
            start = end + skip;
            self.event_size += end - line_start;
            if self.event_size > self.limits.event_bytes {
                return Err(SseError::EventTooLarge { limit: self.limits.event_bytes });
            }
            if end == line_start {
                if let Some(event) = self.dispatch()? {
                    events.push(event);
                }
                continue;
            }
            let line = &self.pending[line_start..end];
            let (field, value) = match line.iter().position(|b| *b == b':') {
                Some(0) => continue, // a comment
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &[][..]),
            };
            if field == b"data" {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
        }
        self.pending.drain(..start);
        // What is left is an incomplete line: it counts against the event.
        if self.event_size + self.pending.len() > self.limits.event_bytes {
            return Err(SseError::EventTooLarge { limit: self.limits.event_bytes });
        }
        Ok(events)
    }

    fn dispatch(&mut self) -> Result<Option<String>, SseError> {
        self.event_size = 0;
        if !std::mem::take(&mut self.has_data) {
            self.data.clear();
            return Ok(None);
        }
        let data = std::mem::take(&mut self.data);
        String::from_utf8(data).map(Some).map_err(|_| SseError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_in(chunks: &[&[u8]]) -> Vec<String> {
        let mut decoder = Decoder::new(Limits::default());
        chunks.iter().flat_map(|c| decoder.push(c).expect("decodes")).collect()
    }

    #[test]
    fn events_data_lines_and_comments() {
        let stream = b": keep-alive\n\nid: 7\ndata: {\"a\":\ndata: 1}\n\nid: 8\n\ndata:x\r\n\r\n";
        assert_eq!(decode_in(&[stream]), vec!["{\"a\":\n1}".to_owned(), "x".to_owned()]);
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line() {
        assert_eq!(decode_in(&[b"data: a\r\rdata: b\n\n"]), vec!["a".to_owned(), "b".to_owned()]);
    }

    #[test]
    fn a_crlf_split_across_chunks_is_one_line_end() {
        // `\r` | `\n\r\n`: read as `\r\n` twice, one event, not two.
        assert_eq!(decode_in(&[b"data: a\r", b"\n\r\n"]), vec!["a".to_owned()]);
    }

    #[test]
    fn an_event_that_never_ends_is_refused_at_its_limit() {
        let mut decoder = Decoder::new(Limits { event_bytes: 1024, reply_bytes: 1 << 20 });
        let mut result = Ok(Vec::new());
        for _ in 0..100 {
            result = decoder.push(b"data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SseError::EventTooLarge { limit: 1024 }));
    }

    #[test]
    fn many_short_lines_count_toward_one_event() {
        let mut decoder = Decoder::new(Limits { event_bytes: 100, reply_bytes: 1 << 20 });
        let lines = b"data: 0123456789\n".repeat(10);
        assert_eq!(decoder.push(&lines), Err(SseError::EventTooLarge { limit: 100 }));
    }

    #[test]
    fn a_reply_past_its_limit_is_refused() {
        let mut decoder = Decoder::new(Limits { event_bytes: 100, reply_bytes: 250 });
        let event = b"data: 0123456789\n\n";
        let outcome: Result<Vec<_>, _> = (0..20).map(|_| decoder.push(event)).collect();
        assert_eq!(outcome, Err(SseError::ReplyTooLarge { limit: 250 }));
    }

    proptest! {
        /// However the bytes are split, multi-byte characters and line ends
        /// included, the events come out whole and unchanged.
        #[test]
        fn any_split_of_the_bytes_gives_the_same_events(
            texts in proptest::collection::vec("[a€😀é\\n ]{0,40}", 1..6),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
            crlf in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut stream = String::new();
            for text in &texts {
                for line in text.split('\n') {
                    stream.push_str(&format!("data: {line}{eol}"));
                }
                stream.push_str(eol);
            }
            let bytes = stream.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&bytes[last..p]);
                last = p;
            }
            chunks.push(&bytes[last..]);
            prop_assert_eq!(decode_in(&chunks), texts);
        }
    }
}
