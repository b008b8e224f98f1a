//! A streaming `multipart/related` parser (RFC 2046 §5.1, as used by WADO-RS,
//! PS3.18 §8.6.1.2) over any `Read`.
//!
//! A study can be gigabytes, so nothing here holds a whole part, let alone a
//! whole response: the parser owns one fixed buffer and hands out each part's
//! body as a reader that ends exactly at the part's end. When a part carries a
//! `Content-Length` (Orthanc's always do) its body is copied straight through,
//! with large reads going directly from the connection into the caller's buffer
//! and no per-byte work. Without one, the body is scanned for the delimiter
//! `\r\n--boundary`, which is the only correct way: bytes that merely resemble
//! the boundary are body data (DICOM-RST #59 was corrupted binary data from a
//! parser that did less).
//!
//! Failures are classified, because the caller's reaction differs: the
//! connection failing or ending early ([`MultipartError::Io`], [`MultipartError::Truncated`])
//! is worth a retry, data that is not multipart at all ([`MultipartError::Malformed`]) is not.

use std::fmt;
use std::io::{self, Read};

use super::PartHeaders;

/// Size of the parser's buffer: large enough that one `read` on a fast
/// connection or an in-memory reader moves a lot of data per call.
const BUF_SIZE: usize = 256 * 1024;
/// Reads at least this large bypass the buffer when it is empty and the
/// part's length is known, saving a copy.
const DIRECT_READ_MIN: usize = 16 * 1024;
/// Garbage tolerated before the first boundary, so that an endless body that
/// is not multipart fails instead of being read forever.
const MAX_PREAMBLE: usize = 1024 * 1024;
/// Limit on one part's header block.
const MAX_HEADERS: usize = 64 * 1024;
/// RFC 2046 allows 70 characters; some servers are generous, so allow more,
/// but a bound keeps a partial delimiter always small next to the buffer.
const MAX_BOUNDARY: usize = 200;

/// Why reading a multipart stream failed. Part numbers count from 1.
#[derive(Debug)]
pub enum MultipartError {
    /// The underlying reader failed (connection reset, idle timeout, ...).
    Io { part: usize, source: io::Error },
    /// The data ended before the closing boundary: inside part `part` when
    /// `inside` is true, else after part `part` was complete.
    Truncated { part: usize, inside: bool },
    /// The data is not valid multipart data.
    Malformed { part: usize, why: String },
}

impl MultipartError {
    /// True when the same request may well succeed if tried again (the
    /// client makes the same split as it words its errors).
    #[cfg(test)]
    pub fn is_transient(&self) -> bool {
        !matches!(self, MultipartError::Malformed { .. })
    }

    /// A copy; an `io::Error` cannot be cloned, so the copy keeps its kind and text.
    fn duplicate(&self) -> MultipartError {
        match self {
            MultipartError::Io { part, source } => MultipartError::Io {
                part: *part,
                source: io::Error::new(source.kind(), source.to_string()),
            },
            MultipartError::Truncated { part, inside } => MultipartError::Truncated {
                part: *part,
                inside: *inside,
            },
            MultipartError::Malformed { part, why } => MultipartError::Malformed {
                part: *part,
                why: why.clone(),
            },
        }
    }

    fn io_kind(&self) -> io::ErrorKind {
        match self {
            MultipartError::Io { source, .. } => source.kind(),
            MultipartError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            MultipartError::Malformed { .. } => io::ErrorKind::InvalidData,
        }
    }
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultipartError::Io { part: 0, source } => {
                write!(f, "reading the response failed before the first part: {source}")
            }
            MultipartError::Io { part, source } => {
                write!(f, "reading the response failed in part {part}: {source}")
            }
            MultipartError::Truncated { part, inside: true } => {
                write!(f, "connection closed in the middle of part {part}")
            }
            MultipartError::Truncated { part: 0, inside: false } => {
                write!(f, "connection closed before the first part")
            }
            MultipartError::Truncated { part, inside: false } => {
                write!(f, "connection closed after part {part}, before the closing boundary")
            }
            MultipartError::Malformed { part: 0, why } => {
                write!(f, "malformed multipart response: {why}")
            }
            MultipartError::Malformed { part, why } => {
                write!(f, "malformed multipart response in part {part}: {why}")
            }
        }
    }
}

impl std::error::Error for MultipartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MultipartError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// Just after a delimiter: either `--` (the end) or a new part follows.
    AfterDelimiter,
    /// In a part's body; `remaining` is `Some` when the part had a Content-Length.
    Body { remaining: Option<u64> },
    /// The closing delimiter was seen.
    Finished,
    /// An error was returned; it is returned again on every later call.
    Failed,
}

/// Streaming parser of a multipart body. Call [`Multipart::next_part`] until
/// it returns `Ok(None)`; each part's body is read through the returned
/// [`PartBody`]. A body not read to its end is skipped by the next call.
pub struct Multipart<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// `\r\n--boundary`.
    delim: Vec<u8>,
    state: State,
    /// Parts started so far; the current part's number.
    part: usize,
    /// In a part without Content-Length: bytes from `pos` already known to
    /// be body data, so that small reads do not search the same bytes again.
    known_body: usize,
    /// The error met by a `PartBody` read that put the parser in
    /// `State::Failed`, until taken.
    failure: Option<MultipartError>,
    /// A copy of the failure, to answer every later call.
    failure_copy: Option<MultipartError>,
}

impl<R: Read> Multipart<R> {
    /// A parser for a body whose Content-Type carried `boundary`.
    pub fn new(inner: R, boundary: &str) -> Multipart<R> {
        let mut delim = Vec::with_capacity(boundary.len() + 4);
        delim.extend_from_slice(b"\r\n--");
        delim.extend_from_slice(boundary.as_bytes());
        let mut buf = vec![0u8; BUF_SIZE].into_boxed_slice();
        // RFC 2046 lets the first delimiter start the body without the CRLF
        // that belongs to every other one; pretending the body starts with a
        // CRLF makes every delimiter look the same.
        buf[..2].copy_from_slice(b"\r\n");
        let mut mp = Multipart {
            inner,
            buf,
            pos: 0,
            end: 2,
            delim,
            state: State::Preamble,
            part: 0,
            known_body: 0,
            failure: None,
            failure_copy: None,
        };
        if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
            mp.fail(MultipartError::Malformed {
                part: 0,
                why: format!("the boundary is empty or longer than {MAX_BOUNDARY} characters"),
            });
        }
        mp
    }

    /// The number of parts started so far.
    #[cfg(test)]
    pub fn parts(&self) -> usize {
        self.part
    }

    /// Takes the error that stopped the parser, if any. Errors seen through a
    /// [`PartBody`] reach the caller as `io::Error`s; this gives back the
    /// classified original, so that a caller whose own code turned it into
    /// something else can still tell a cut connection from its own failure.
    pub fn take_failure(&mut self) -> Option<MultipartError> {
        self.failure.take()
    }

    /// Moves to the next part, skipping whatever is left of the current one.
    /// `Ok(None)` after the closing delimiter.
    pub fn next_part(&mut self) -> Result<Option<(PartHeaders, PartBody<'_, R>)>, MultipartError> {
        loop {
            match self.state {
                State::Failed => return Err(self.repeat_failure()),
                State::Finished => return Ok(None),
                State::Preamble => self.skip_preamble()?,
                State::Body { .. } => self.skip_body()?,
                State::AfterDelimiter => {
                    if !self.after_delimiter()? {
                        self.state = State::Finished;
                        return Ok(None);
                    }
                    self.part += 1;
                    let headers = self.read_headers()?;
                    self.state = State::Body {
                        remaining: headers.content_length,
                    };
                    return Ok(Some((headers, PartBody { mp: self })));
                }
            }
        }
    }

    // --- errors -----------------------------------------------------------

    /// Puts the parser in the failed state; returns the error for the caller.
    fn fail(&mut self, error: MultipartError) -> MultipartError {
        self.state = State::Failed;
        self.failure_copy = Some(error.duplicate());
        error
    }

    /// Like `fail`, for errors met inside a `PartBody` read: the original is
    /// kept for `take_failure`, the `Read` caller gets an `io::Error`.
    fn fail_io(&mut self, error: MultipartError) -> io::Error {
        let returned = io::Error::new(error.io_kind(), error.to_string());
        self.state = State::Failed;
        self.failure_copy = Some(error.duplicate());
        self.failure = Some(error);
        returned
    }

    fn repeat_failure(&mut self) -> MultipartError {
        match (self.failure.take(), &self.failure_copy) {
            (Some(original), _) => original,
            (None, Some(copy)) => copy.duplicate(),
            (None, None) => MultipartError::Malformed {
                part: self.part,
                why: "the parser failed earlier".into(),
            },
        }
    }

    fn repeat_failure_io(&self) -> io::Error {
        match &self.failure_copy {
            Some(copy) => io::Error::new(copy.io_kind(), copy.to_string()),
            None => io::Error::other("the multipart parser failed earlier"),
        }
    }

    // --- buffer -----------------------------------------------------------

    /// Reads more data into the buffer, compacting it first when the free
    /// tail is small. Returns the number of bytes added; 0 at end of input.
    fn fill(&mut self) -> Result<usize, MultipartError> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == self.buf.len() || self.buf.len() - self.end < DIRECT_READ_MIN {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            // Unreachable with the limits above; an empty read would look like the end of input.
            return Err(MultipartError::Malformed {
                part: self.part,
                why: "the parser's buffer is full".into(),
            });
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(MultipartError::Io {
                        part: self.part,
                        source: e,
                    });
                }
            }
        }
    }

    /// Makes at least `n` bytes available from `pos`; false if the input ended first.
    fn fill_to(&mut self, n: usize) -> Result<bool, MultipartError> {
        while self.end - self.pos < n {
            if self.fill()? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    // --- structure --------------------------------------------------------

    fn skip_preamble(&mut self) -> Result<(), MultipartError> {
        let mut skipped = 0usize;
        loop {
            match find_delim(&self.buf[self.pos..self.end], &self.delim) {
                Match::Full(i) => {
                    self.pos += i + self.delim.len();
                    self.state = State::AfterDelimiter;
                    return Ok(());
                }
                Match::Partial(i) => {
                    skipped += i;
                    self.pos += i;
                }
                Match::None => {
                    skipped += self.end - self.pos;
                    self.pos = self.end;
                }
            }
            if skipped > MAX_PREAMBLE {
                return Err(self.fail(MultipartError::Malformed {
                    part: 0,
                    why: format!("no boundary in the first {} KiB of the response", MAX_PREAMBLE / 1024),
                }));
            }
            match self.fill() {
                Ok(0) => {
                    let e = if skipped <= 2 {
                        MultipartError::Truncated { part: 0, inside: false }
                    } else {
                        MultipartError::Malformed {
                            part: 0,
                            why: "the response contains no boundary".into(),
                        }
                    };
                    return Err(self.fail(e));
                }
                Ok(_) => {}
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// After a delimiter: true if a part follows (its header block is next),
    /// false for the closing `--`.
    fn after_delimiter(&mut self) -> Result<bool, MultipartError> {
        let part = self.part;
        match self.fill_to(2) {
            Ok(true) => {}
            Ok(false) => {
                return Err(self.fail(MultipartError::Truncated { part, inside: false }));
            }
            Err(e) => return Err(self.fail(e)),
        }
        if &self.buf[self.pos..self.pos + 2] == b"--" {
            self.pos += 2;
            return Ok(false);
        }
        // Transport padding (spaces and tabs) may follow a delimiter.
        loop {
            match self.fill_to(2) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(self.fail(MultipartError::Truncated { part, inside: false }));
                }
                Err(e) => return Err(self.fail(e)),
            }
            match &self.buf[self.pos..self.pos + 2] {
                b"\r\n" => {
                    self.pos += 2;
                    return Ok(true);
                }
                [b' ' | b'\t', _] if self.end - self.pos < MAX_HEADERS => self.pos += 1,
                _ => {
                    return Err(self.fail(MultipartError::Malformed {
                        part,
                        why: "unexpected data after a boundary".into(),
                    }));
                }
            }
        }
    }

    fn read_headers(&mut self) -> Result<PartHeaders, MultipartError> {
        let part = self.part;
        // A part without headers starts with the empty line at once.
        let mut scanned: usize = 0;
        let block_end = loop {
            let avail = &self.buf[self.pos..self.end];
            if avail.starts_with(b"\r\n") {
                break None;
            }
            // Resume where the last look stopped, so that a slow server
            // does not make this quadratic.
            let from = scanned.saturating_sub(3);
            let found = avail[from..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| from + i);
            if found.unwrap_or(avail.len()) > MAX_HEADERS {
                return Err(self.fail(MultipartError::Malformed {
                    part,
                    why: format!("its headers are longer than {} KiB", MAX_HEADERS / 1024),
                }));
            }
            if found.is_some() {
                break found;
            }
            scanned = avail.len();
            match self.fill() {
                Ok(0) => return Err(self.fail(MultipartError::Truncated { part, inside: true })),
                Ok(_) => {}
                Err(e) => return Err(self.fail(e)),
            }
        };
        let Some(len) = block_end else {
            self.pos += 2;
            return Ok(PartHeaders::default());
        };
        let block = String::from_utf8_lossy(&self.buf[self.pos..self.pos + len]).into_owned();
        self.pos += len + 4;
        parse_headers(&block).map_err(|why| self.fail(MultipartError::Malformed { part, why }))
    }

    fn skip_body(&mut self) -> Result<(), MultipartError> {
        loop {
            match self.body_avail() {
                Ok(0) => return Ok(()),
                Ok(n) => self.consume(n),
                Err(()) => return Err(self.repeat_failure()),
            }
        }
    }

    // --- bodies -------------------------------------------------------------

    /// Makes the next run of body bytes available at `buf[pos..pos + n]` and
    /// returns n (at least 1; see `consume`), or 0 at the end of the body,
    /// which leaves the parser after the part's closing delimiter. On error
    /// the failure is recorded (see `fail_io`) and `Err(())` returned.
    fn body_avail(&mut self) -> Result<usize, ()> {
        let State::Body { remaining } = self.state else {
            return Ok(0);
        };
        let part = self.part;
        match remaining {
            Some(0) => {
                self.finish_sized_body()?;
                Ok(0)
            }
            Some(r) => {
                if self.pos == self.end {
                    match self.fill() {
                        Ok(0) => {
                            return self.record(MultipartError::Truncated { part, inside: true });
                        }
                        Ok(_) => {}
                        Err(e) => return self.record(e),
                    }
                }
                Ok((self.end - self.pos).min(usize::try_from(r).unwrap_or(usize::MAX)))
            }
            None if self.known_body > 0 => Ok(self.known_body),
            None => loop {
                match find_delim(&self.buf[self.pos..self.end], &self.delim) {
                    Match::Full(0) => {
                        self.pos += self.delim.len();
                        self.state = State::AfterDelimiter;
                        return Ok(0);
                    }
                    Match::Full(i) | Match::Partial(i) if i > 0 => {
                        self.known_body = i;
                        return Ok(i);
                    }
                    Match::None if self.end > self.pos => {
                        self.known_body = self.end - self.pos;
                        return Ok(self.known_body);
                    }
                    _ => {}
                }
                // Empty buffer, or only the start of what may be a delimiter: read on.
                match self.fill() {
                    Ok(0) => return self.record(MultipartError::Truncated { part, inside: true }),
                    Ok(_) => {}
                    Err(e) => return self.record(e),
                }
            },
        }
    }

    /// Marks `n` bytes returned by `body_avail` as read.
    fn consume(&mut self, n: usize) {
        self.pos += n;
        match &mut self.state {
            State::Body { remaining: Some(r) } => *r -= n as u64,
            _ => self.known_body -= n,
        }
    }

    /// After the last byte of a part with a Content-Length: the delimiter
    /// must follow, or the length was wrong and the data cannot be trusted.
    fn finish_sized_body(&mut self) -> Result<(), ()> {
        let part = self.part;
        let dl = self.delim.len();
        match self.fill_to(dl) {
            Ok(true) => {}
            // The response ended right after a complete part: the part is
            // whole; the missing rest is reported by the next `next_part`.
            Ok(false) if self.pos == self.end => {
                self.state = State::AfterDelimiter;
                return Ok(());
            }
            Ok(false) => {
                return self.record(MultipartError::Truncated { part, inside: false });
            }
            Err(e) => return self.record(e),
        }
        if self.buf[self.pos..self.pos + dl] != self.delim[..] {
            return self.record(MultipartError::Malformed {
                part,
                why: "no boundary where its Content-Length says it ends".into(),
            });
        }
        self.pos += dl;
        self.state = State::AfterDelimiter;
        Ok(())
    }

    /// `fail_io` for `body_avail`, whose callers fetch the error later.
    fn record<T>(&mut self, error: MultipartError) -> Result<T, ()> {
        let _ = self.fail_io(error);
        Err(())
    }

    fn read_body(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        match self.state {
            State::Failed => return Err(self.repeat_failure_io()),
            // A large read of a sized body with nothing buffered goes
            // straight from the source into the caller's buffer.
            State::Body { remaining: Some(r) } if r > 0 && self.pos == self.end && out.len() >= DIRECT_READ_MIN => {
                let want = out.len().min(usize::try_from(r).unwrap_or(usize::MAX));
                let part = self.part;
                loop {
                    match self.inner.read(&mut out[..want]) {
                        Ok(0) => {
                            return Err(self.fail_io(MultipartError::Truncated { part, inside: true }));
                        }
                        Ok(n) => {
                            self.state = State::Body {
                                remaining: Some(r - n as u64),
                            };
                            return Ok(n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(self.fail_io(MultipartError::Io { part, source: e })),
                    }
                }
            }
            _ => {}
        }
        match self.body_avail() {
            Ok(n) => {
                let n = n.min(out.len());
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.consume(n);
                Ok(n)
            }
            Err(()) => Err(self.repeat_failure_io()),
        }
    }
}

/// One part's body; reads end (return 0) at the end of the part.
pub struct PartBody<'a, R> {
    mp: &'a mut Multipart<R>,
}

impl<R: Read> Read for PartBody<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.mp.read_body(out)
    }
}

enum Match {
    /// The delimiter starts at this offset.
    Full(usize),
    /// The data ends with the start of the delimiter, at this offset.
    Partial(usize),
    None,
}

/// Finds `delim` (which starts with `\r`) in `hay`, or a prefix of it at the end.
fn find_delim(hay: &[u8], delim: &[u8]) -> Match {
    let mut from = 0;
    while let Some(i) = find_byte(&hay[from..], delim[0]) {
        let at = from + i;
        let rest = &hay[at..];
        if rest.len() >= delim.len() {
            if &rest[..delim.len()] == delim {
                return Match::Full(at);
            }
        } else if delim.starts_with(rest) {
            return Match::Partial(at);
        }
        from = at + 1;
    }
    Match::None
}

/// Position of the first `needle` in `hay`, eight bytes at a time (the
/// classic "has zero byte" trick), so that scanning a part without a
/// Content-Length is not a byte-by-byte loop.
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
        let x = word ^ pattern;
        if (x.wrapping_sub(LO) & !x & HI) != 0 {
            return chunk.iter().position(|&b| b == needle).map(|i| offset + i);
        }
        offset += 8;
    }
    chunks.remainder().iter().position(|&b| b == needle).map(|i| offset + i)
}

/// Parses a part's header block (lines separated by CRLF, no final empty line).
fn parse_headers(block: &str) -> Result<PartHeaders, String> {
    let mut lines: Vec<String> = Vec::new();
    for line in block.split("\r\n") {
        // Obsolete line folding: a line starting with white space continues the previous one.
        if line.starts_with([' ', '\t'])
            && let Some(last) = lines.last_mut()
        {
            last.push(' ');
            last.push_str(line.trim());
            continue;
        }
        lines.push(line.to_string());
    }
    let mut h = PartHeaders::default();
    for line in &lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("the header line `{}` has no colon", crate::text::escape(line)));
        };
        let value = value.trim();
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-type") {
            h.content_type = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            h.content_length = Some(
                value
                    .parse()
                    .map_err(|_| format!("its Content-Length `{}` is not a number", crate::text::escape(value)))?,
            );
        } else if name.eq_ignore_ascii_case("content-location") {
            h.content_location = Some(value.to_string());
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const B: &str = "b0undary";

    /// A reader that hands out at most `chunk` bytes per read.
    struct Trickle<R> {
        inner: R,
        chunk: usize,
    }

    impl<R: Read> Read for Trickle<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.chunk);
            self.inner.read(&mut buf[..n])
        }
    }

    /// A reader that fails with `kind` once its data is used up.
    struct FailAtEnd {
        inner: Cursor<Vec<u8>>,
        kind: io::ErrorKind,
    }

    impl Read for FailAtEnd {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.inner.read(buf)? {
                0 => Err(io::Error::new(self.kind, "boom")),
                n => Ok(n),
            }
        }
    }

    /// Builds a multipart body; `sized` adds Content-Length to every part.
    fn body(boundary: &str, parts: &[&[u8]], sized: bool) -> Vec<u8> {
        let mut out = b"this is the preamble, ignored\r\n".to_vec();
        for p in parts {
            out.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/dicom\r\n").as_bytes());
            if sized {
                out.extend_from_slice(format!("Content-Length: {}\r\n", p.len()).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{boundary}--\r\nepilogue").as_bytes());
        out
    }

    /// Reads every part with reads of `read_size` bytes.
    fn collect<R: Read>(mut mp: Multipart<R>, read_size: usize) -> Result<Vec<(PartHeaders, Vec<u8>)>, String> {
        let mut out = Vec::new();
        loop {
            match mp.next_part() {
                Ok(None) => return Ok(out),
                Ok(Some((h, mut body))) => {
                    let mut data = Vec::new();
                    let mut chunk = vec![0; read_size];
                    loop {
                        match body.read(&mut chunk) {
                            Ok(0) => break,
                            Ok(n) => data.extend_from_slice(&chunk[..n]),
                            Err(e) => return Err(format!("read: {e}")),
                        }
                    }
                    out.push((h, data));
                }
                Err(e) => return Err(format!("next: {e}")),
            }
        }
    }

    fn parts_of(data: &[u8], chunk: usize, read_size: usize) -> Result<Vec<Vec<u8>>, String> {
        let r = Trickle {
            inner: Cursor::new(data.to_vec()),
            chunk,
        };
        Ok(collect(Multipart::new(r, B), read_size)?
            .into_iter()
            .map(|(_, d)| d)
            .collect())
    }

    fn sample_parts() -> Vec<Vec<u8>> {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        vec![
            b"first part".to_vec(),
            Vec::new(),
            // Bytes that resemble the delimiter but are not it.
            format!("x\r\n--b0undarX\r\n-{B}\r\n--b0und\r--{B}\n--{B}--").into_bytes(),
            b"\r\n".to_vec(),
            b"\r".to_vec(),
            big,
            b"last".to_vec(),
        ]
    }

    #[test]
    fn every_read_pattern_gives_the_same_parts() {
        let parts = sample_parts();
        let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        for sized in [true, false] {
            let data = body(B, &refs, sized);
            for chunk in [1, 2, 3, 7, 13, 4096, 70_000, usize::MAX] {
                for read_size in [1, 5, 8192, 1 << 20] {
                    // One-byte reads of a 300 kB part are slow in debug builds; once is enough.
                    if chunk < 8 && read_size < 8 && !(chunk == 1 && read_size == 1) {
                        continue;
                    }
                    let got = parts_of(&data, chunk, read_size)
                        .unwrap_or_else(|e| panic!("sized={sized} chunk={chunk}: {e}"));
                    assert_eq!(got, parts, "sized={sized} chunk={chunk} read_size={read_size}");
                }
            }
        }
    }

    #[test]
    fn headers_are_parsed() {
        let data = format!(
            "--{B}\r\ncontent-type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\nCONTENT-LENGTH:  3 \r\nContent-Location: http://x/studies/1/series/2/instances/3\r\nMIME-Version: 1.0\r\n\r\nabc\r\n--{B}\r\n\r\nno headers\r\n--{B}--"
        );
        let got = collect(Multipart::new(Cursor::new(data), B), 100).unwrap();
        assert_eq!(got.len(), 2);
        let h = &got[0].0;
        assert_eq!(
            h.content_type.as_deref(),
            Some("application/dicom; transfer-syntax=1.2.840.10008.1.2.1")
        );
        assert_eq!(h.content_length, Some(3));
        assert_eq!(
            h.content_location.as_deref(),
            Some("http://x/studies/1/series/2/instances/3")
        );
        assert_eq!(got[0].1, b"abc");
        assert_eq!(got[1].0, PartHeaders::default());
        assert_eq!(got[1].1, b"no headers");
    }

    #[test]
    fn boundary_at_the_very_start_and_transport_padding() {
        let data = format!("--{B}  \t\r\nContent-Type: a/b\r\n\r\nX\r\n--{B}--");
        let got = collect(Multipart::new(Cursor::new(data), B), 100).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, b"X");
    }

    #[test]
    fn orthanc_style_long_boundary() {
        let b = "a".repeat(35) + &"Z9".repeat(17) + "-_";
        assert_eq!(b.len(), 71);
        let data = body(&b, &[b"one", b"two"], true);
        let got = collect(Multipart::new(Cursor::new(data), &b), 8).unwrap();
        assert_eq!(
            got.iter().map(|p| p.1.clone()).collect::<Vec<_>>(),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
    }

    #[test]
    fn zero_parts() {
        let data = format!("--{B}--\r\n");
        assert!(collect(Multipart::new(Cursor::new(data), B), 10).unwrap().is_empty());
    }

    #[test]
    fn unread_bodies_are_skipped() {
        for sized in [true, false] {
            let parts = sample_parts();
            let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            let data = body(B, &refs, sized);
            let mut mp = Multipart::new(
                Trickle {
                    inner: Cursor::new(data),
                    chunk: 1000,
                },
                B,
            );
            let mut n = 0;
            while let Some((_, mut body)) = mp.next_part().unwrap() {
                // Read a little of some, nothing of others.
                if n % 2 == 0 {
                    let mut b = [0u8; 3];
                    let _ = body.read(&mut b).unwrap();
                }
                n += 1;
            }
            assert_eq!(n, parts.len());
            assert_eq!(mp.parts(), parts.len());
        }
    }

    #[test]
    fn end_inside_a_part_is_transient() {
        for sized in [true, false] {
            let mut data = body(B, &[b"complete", b"cut short here"], sized);
            let cut = data.windows(5).position(|w| w == b"short").unwrap();
            data.truncate(cut);
            let mut mp = Multipart::new(Cursor::new(data), B);
            let (_, mut b) = mp.next_part().unwrap().unwrap();
            let mut v = Vec::new();
            b.read_to_end(&mut v).unwrap();
            let (_, mut b) = mp.next_part().unwrap().unwrap();
            let err = b.read_to_end(&mut Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
            assert_eq!(err.to_string(), "connection closed in the middle of part 2");
            let f = mp.take_failure().unwrap();
            assert!(f.is_transient());
            assert!(matches!(f, MultipartError::Truncated { part: 2, inside: true }));
            // Later calls keep failing.
            assert!(mp.next_part().err().unwrap().is_transient());
        }
    }

    #[test]
    fn end_inside_headers_is_transient() {
        let data = format!("--{B}\r\nContent-Type: appli");
        let err = Multipart::new(Cursor::new(data), B).next_part().err().unwrap();
        assert!(err.is_transient());
        assert_eq!(err.to_string(), "connection closed in the middle of part 1");
    }

    #[test]
    fn missing_final_boundary_is_transient() {
        for sized in [true, false] {
            let data = format!(
                "--{B}\r\n{}\r\nabc\r\n--{B}",
                if sized { "Content-Length: 3\r\n" } else { "" }
            );
            let mut mp = Multipart::new(Cursor::new(data), B);
            let (_, mut b) = mp.next_part().unwrap().unwrap();
            let mut v = Vec::new();
            b.read_to_end(&mut v).unwrap();
            assert_eq!(v, b"abc");
            let err = mp.next_part().err().unwrap();
            assert!(err.is_transient(), "{err}");
            assert_eq!(
                err.to_string(),
                "connection closed after part 1, before the closing boundary"
            );
        }
        // Sized part complete, then nothing at all.
        let data = format!("--{B}\r\nContent-Length: 3\r\n\r\nabc");
        let mut mp = Multipart::new(Cursor::new(data), B);
        let (_, mut b) = mp.next_part().unwrap().unwrap();
        let mut v = Vec::new();
        b.read_to_end(&mut v).unwrap();
        assert_eq!(v, b"abc");
        assert!(mp.next_part().err().unwrap().is_transient());
    }

    #[test]
    fn empty_response_is_transient() {
        let err = Multipart::new(Cursor::new(Vec::new()), B).next_part().err().unwrap();
        assert!(err.is_transient());
    }

    #[test]
    fn garbage_is_malformed() {
        let cases: Vec<Vec<u8>> = vec![
            b"<html>not multipart</html>".to_vec(),
            format!("--{B}\r\nno colon here\r\n\r\nx\r\n--{B}--").into_bytes(),
            format!("--{B}\r\nContent-Length: many\r\n\r\nx\r\n--{B}--").into_bytes(),
            format!("--{B}junk\r\n\r\nx\r\n--{B}--").into_bytes(),
            vec![0xFF; MAX_PREAMBLE + 10],
        ];
        for data in cases {
            let err = collect(Multipart::new(Cursor::new(data.clone()), B), 100).unwrap_err();
            let mut mp = Multipart::new(Cursor::new(data), B);
            let e = mp.next_part().err().unwrap();
            assert!(!e.is_transient(), "{err} / {e}");
        }
        let huge_headers = format!("--{B}\r\nX: {}\r\n\r\n", "y".repeat(MAX_HEADERS + 10));
        assert!(
            !Multipart::new(Cursor::new(huge_headers), B)
                .next_part()
                .err()
                .unwrap()
                .is_transient()
        );
        assert!(
            !Multipart::new(Cursor::new(Vec::new()), "")
                .next_part()
                .err()
                .unwrap()
                .is_transient()
        );
    }

    #[test]
    fn wrong_content_length_is_malformed() {
        // Says 2, has 3: the boundary is not where it should be.
        let data = format!("--{B}\r\nContent-Length: 2\r\n\r\nabc\r\n--{B}--");
        let mut mp = Multipart::new(Cursor::new(data), B);
        let (_, mut b) = mp.next_part().unwrap().unwrap();
        let err = b.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(!mp.take_failure().unwrap().is_transient());
    }

    #[test]
    fn reader_errors_are_transient_and_keep_their_source() {
        for sized in [true, false] {
            let mut data = body(B, &[b"complete", &[7u8; 100_000]], sized);
            data.truncate(data.len() - 50_000);
            let r = FailAtEnd {
                inner: Cursor::new(data),
                kind: io::ErrorKind::TimedOut,
            };
            let mut mp = Multipart::new(r, B);
            let (_, mut b) = mp.next_part().unwrap().unwrap();
            b.read_to_end(&mut Vec::new()).unwrap();
            let (_, mut b) = mp.next_part().unwrap().unwrap();
            let err = b.read_to_end(&mut Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            match mp.take_failure().unwrap() {
                MultipartError::Io { part: 2, source } => {
                    assert_eq!(source.kind(), io::ErrorKind::TimedOut)
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn find_byte_matches_position() {
        let hay: Vec<u8> = (0..100u8).collect();
        for needle in [0u8, 1, 7, 8, 9, 63, 64, 99, 100, 200] {
            for start in 0..17 {
                assert_eq!(
                    find_byte(&hay[start..], needle),
                    hay[start..].iter().position(|&b| b == needle),
                    "needle {needle} start {start}"
                );
            }
        }
        assert_eq!(find_byte(&[0x80, 0x0D, 0x8D], 0x0D), Some(1));
        assert_eq!(find_byte(&[0x8D; 20], 0x0D), None);
    }

    /// Throughput on in-memory data; run with
    /// `cargo test --release --lib dicomweb::multipart -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput() {
        let part = vec![0x42u8; 4 << 20];
        let parts: Vec<&[u8]> = (0..256).map(|_| part.as_slice()).collect();
        for sized in [true, false] {
            let data = body(B, &parts, sized);
            for read_size in [8 << 10, 64 << 10, 1 << 20] {
                let mut chunk = vec![0u8; read_size];
                let mut best = f64::MAX;
                for _ in 0..3 {
                    let start = std::time::Instant::now();
                    let mut mp = Multipart::new(Cursor::new(&data[..]), B);
                    let mut total = 0u64;
                    while let Some((_, mut b)) = mp.next_part().unwrap() {
                        loop {
                            match b.read(&mut chunk).unwrap() {
                                0 => break,
                                n => total += n as u64,
                            }
                        }
                    }
                    assert_eq!(total, 256 * (4 << 20));
                    best = best.min(start.elapsed().as_secs_f64());
                }
                println!(
                    "{:>28}, reads of {:>5} KiB: {:.2} GB/s",
                    if sized {
                        "with Content-Length"
                    } else {
                        "scanning for the boundary"
                    },
                    read_size >> 10,
                    (256u64 * (4 << 20)) as f64 / best / 1e9
                );
            }
        }
    }

    /// Random and mutated bodies: the parser never panics, never allocates
    /// from a length the body declares, and gives back exactly the parts
    /// sent, or (once mutated) parts that are bytes of the body, or an error.
    mod props {
        use super::*;
        use crate::intake::tests::allocated_by;
        use proptest::prelude::*;

        /// The parser's own buffer, a header block, and the test's copies of what it read
        /// (reads of at most 64 bytes, a buffer per part).
        fn bound(input: usize) -> usize {
            BUF_SIZE + 2 * MAX_HEADERS + 16 * input + 64 * 1024
        }

        fn parse(data: &[u8], chunk: usize, read_size: usize) -> Result<Vec<Vec<u8>>, String> {
            let (result, allocated) = allocated_by(|| parts_of(data, chunk, read_size));
            assert!(
                allocated <= bound(data.len()),
                "{allocated} bytes allocated for {} bytes of input",
                data.len()
            );
            result
        }

        fn part() -> impl Strategy<Value = Vec<u8>> {
            let delimiter_like = prop::sample::select(vec![
                format!("\r\n--{B}").into_bytes(),
                format!("--{B}--").into_bytes(),
                b"\r\n--".to_vec(),
                format!("\r\n--{}", &B[..4]).into_bytes(),
            ]);
            prop::collection::vec(
                prop_oneof![prop::collection::vec(any::<u8>(), 0..300), delimiter_like],
                0..4,
            )
            .prop_map(|pieces| pieces.concat())
        }

        fn contains(hay: &[u8], needle: &[u8]) -> bool {
            needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            #[test]
            fn valid_bodies_give_exactly_their_parts(
                parts in prop::collection::vec(part(), 0..5),
                sized in any::<bool>(),
                chunk in 1usize..3000,
                read_size in 1usize..64,
            ) {
                // Without Content-Length, a body holding the delimiter is not a valid body.
                let delimiter = format!("\r\n--{B}").into_bytes();
                prop_assume!(sized || !parts.iter().any(|p| contains(p, &delimiter)));
                let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                let data = body(B, &refs, sized);
                prop_assert_eq!(parse(&data, chunk, read_size), Ok(parts));
            }

            #[test]
            fn mutated_bodies_give_bytes_that_were_sent_or_an_error(
                parts in prop::collection::vec(part(), 1..4),
                sized in any::<bool>(),
                edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
                cut in prop::option::of(any::<prop::sample::Index>()),
                lie in prop::option::of(0u64..u64::MAX),
                chunk in 1usize..3000,
            ) {
                let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                let mut data = body(B, &refs, sized);
                if let Some(length) = lie {
                    // A Content-Length that claims anything at all.
                    let text = String::from_utf8_lossy(&data).into_owned();
                    if let Some(at) = text.find("Content-Length: ") {
                        let end = at + text[at..].find("\r\n").unwrap();
                        let mut lied = data[..at].to_vec();
                        lied.extend_from_slice(format!("Content-Length: {length}").as_bytes());
                        lied.extend_from_slice(&data[end..]);
                        data = lied;
                    }
                }
                for (at, byte) in edits {
                    let at = at.index(data.len());
                    data[at] = byte;
                }
                if let Some(cut) = cut {
                    data.truncate(cut.index(data.len()));
                }
                if let Ok(got) = parse(&data, chunk, 64) {
                    let total: usize = got.iter().map(Vec::len).sum();
                    prop_assert!(total <= data.len());
                    for p in &got {
                        prop_assert!(contains(&data, p), "a part that is not in the body");
                    }
                }
            }

            #[test]
            fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..4000), chunk in 1usize..5000) {
                let _ = parse(&data, chunk, 64);
            }
        }
    }
}
