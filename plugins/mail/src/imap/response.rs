//! Reading IMAP server responses (RFC 3501 section 7) from a byte stream,
//! bounded: a line longer than [`MAX_LINE`], a literal longer than
//! [`MAX_LITERAL`] or more than [`MAX_LITERALS`] literals in one response
//! are protocol errors, not allocations.

use std::io::Read;

use crate::error::{Error, Result};

/// Longest line (between literals) accepted from the server.
pub const MAX_LINE: usize = 1 << 20;
/// Largest literal (a message) accepted from the server.
pub const MAX_LITERAL: u64 = 512 << 20;
/// Most literals in one response.
pub const MAX_LITERALS: usize = 64;

/// One complete response: its lines, without CRLF, and the literals between
/// them (`literals[i]` follows `lines[i]`, which ends with `{N}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// The text pieces.
    pub lines: Vec<Vec<u8>>,
    /// The literals.
    pub literals: Vec<Vec<u8>>,
}

/// A parsed data item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An atom or number (`\Seen`, `42`, `BODY[HEADER.FIELDS (X)]<0>`).
    Atom(String),
    /// A quoted string or a literal.
    Str(Vec<u8>),
    /// A parenthesised list.
    List(Vec<Token>),
    /// `NIL`.
    Nil,
}

impl Token {
    /// The atom's text, case as sent.
    pub fn atom(&self) -> Option<&str> {
        match self {
            Token::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// A number atom.
    pub fn number(&self) -> Option<u64> {
        self.atom().and_then(|a| a.parse().ok())
    }

    /// A string, an atom (astring) or NIL as bytes.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Token::Str(s) => Some(s),
            Token::Atom(a) => Some(a.as_bytes()),
            _ => None,
        }
    }

    /// A string or atom as text (lossy).
    pub fn text(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// Reads responses from a stream, counting the bytes read.
pub struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes received so far.
    pub bytes_read: u64,
}

fn broken(what: &str) -> Error {
    Error::Other(format!("IMAP protocol error: {what}"))
}

fn io(e: std::io::Error) -> Error {
    Error::Application(format!("reading from the IMAP server: {e}"))
}

impl<R: Read> Reader<R> {
    /// Wraps a stream.
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            buf: vec![0; 256 * 1024],
            start: 0,
            end: 0,
            bytes_read: 0,
        }
    }

    /// The wrapped stream.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn fill(&mut self) -> Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.inner.read(&mut self.buf[self.end..]).map_err(io)?;
        if n == 0 {
            return Err(Error::Application(
                "the IMAP server closed the connection".into(),
            ));
        }
        self.bytes_read += n as u64;
        self.end += n;
        Ok(())
    }

    fn line(&mut self) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&avail[..i]);
                self.start += i + 1;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > MAX_LINE {
                    return Err(broken("a response line is too long"));
                }
                return Ok(line);
            }
            line.extend_from_slice(avail);
            self.start = self.end;
            if line.len() > MAX_LINE {
                return Err(broken("a response line is too long"));
            }
            self.fill()?;
        }
    }

    fn literal(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n.min(1 << 24));
        while out.len() < n {
            if self.start == self.end {
                self.fill()?;
            }
            let take = (n - out.len()).min(self.end - self.start);
            out.extend_from_slice(&self.buf[self.start..self.start + take]);
            self.start += take;
        }
        Ok(out)
    }

    /// Reads one whole response, literals included.
    pub fn response(&mut self) -> Result<Response> {
        let mut r = Response::default();
        loop {
            let line = self.line()?;
            let lit = literal_size(&line)?;
            r.lines.push(line);
            let Some(n) = lit else { return Ok(r) };
            if r.literals.len() >= MAX_LITERALS {
                return Err(broken("too many literals in one response"));
            }
            if n > MAX_LITERAL {
                return Err(broken(&format!(
                    "a literal of {n} bytes is over the limit of {MAX_LITERAL}"
                )));
            }
            r.literals.push(self.literal(n as usize)?);
        }
    }
}

/// The size of the literal a line announces at its end (`{N}`), if any.
fn literal_size(line: &[u8]) -> Result<Option<u64>> {
    if line.last() != Some(&b'}') {
        return Ok(None);
    }
    let Some(open) = line.iter().rposition(|&b| b == b'{') else {
        return Ok(None);
    };
    let digits = &line[open + 1..line.len() - 1];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    if digits.len() > 12 {
        return Err(broken("a literal size is too large"));
    }
    let n = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| broken("bad literal size"))?;
    Ok(Some(n))
}

/// What a response is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind<'a> {
    /// `+ ...`: the server waits for more of a command.
    Continuation,
    /// `* ...`.
    Untagged,
    /// `TAG ...`.
    Tagged(&'a str),
}

/// A status response's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `OK`.
    Ok,
    /// `NO`.
    No,
    /// `BAD`.
    Bad,
    /// `PREAUTH`.
    Preauth,
    /// `BYE`.
    Bye,
}

impl Response {
    /// Continuation, untagged or tagged.
    pub fn kind(&self) -> Kind<'_> {
        let first = self.lines.first().map(Vec::as_slice).unwrap_or(b"");
        if first.starts_with(b"+") {
            Kind::Continuation
        } else if first.starts_with(b"* ") {
            Kind::Untagged
        } else {
            let tag = first.split(|&b| b == b' ').next().unwrap_or(b"");
            Kind::Tagged(std::str::from_utf8(tag).unwrap_or(""))
        }
    }

    /// The first line after the tag (or `*`).
    fn after_tag(&self) -> &[u8] {
        let first = self.lines.first().map(Vec::as_slice).unwrap_or(b"");
        match first.iter().position(|&b| b == b' ') {
            Some(i) => &first[i + 1..],
            None => b"",
        }
    }

    /// For a status response (`OK`, `NO`, `BAD`, `PREAUTH`, `BYE`): the
    /// condition, the response code in brackets if any, and the text.
    pub fn status(&self) -> Option<(Status, Option<String>, String)> {
        let rest = String::from_utf8_lossy(self.after_tag()).into_owned();
        let (word, text) = rest.split_once(' ').unwrap_or((&rest, ""));
        let status = match word.to_ascii_uppercase().as_str() {
            "OK" => Status::Ok,
            "NO" => Status::No,
            "BAD" => Status::Bad,
            "PREAUTH" => Status::Preauth,
            "BYE" => Status::Bye,
            _ => return None,
        };
        let text = text.trim_start();
        if let Some(inner) = text.strip_prefix('[') {
            if let Some(end) = inner.find(']') {
                return Some((
                    status,
                    Some(inner[..end].to_owned()),
                    inner[end + 1..].trim().to_owned(),
                ));
            }
        }
        Some((status, None, text.to_owned()))
    }

    /// The tokens of a data response after `*` (or the tag).
    pub fn tokens(&self) -> Result<Vec<Token>> {
        let mut c = Cursor {
            r: self,
            seg: 0,
            pos: self
                .lines
                .first()
                .map_or(0, |l| l.len() - self.after_tag().len()),
        };
        let mut out = Vec::new();
        loop {
            c.skip_spaces();
            if c.at_end() {
                return Ok(out);
            }
            out.push(c.token(0)?);
        }
    }
}

struct Cursor<'a> {
    r: &'a Response,
    seg: usize,
    pos: usize,
}

impl Cursor<'_> {
    fn line(&self) -> &[u8] {
        self.r.lines.get(self.seg).map(Vec::as_slice).unwrap_or(b"")
    }

    fn peek(&self) -> Option<u8> {
        self.line().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.line().len() && self.seg + 1 >= self.r.lines.len()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn token(&mut self, depth: usize) -> Result<Token> {
        if depth > 32 {
            return Err(broken("lists nested too deep"));
        }
        match self.peek() {
            None => Err(broken("unexpected end of response")),
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_spaces();
                    match self.peek() {
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(Token::List(items));
                        }
                        None => return Err(broken("unclosed list")),
                        _ => items.push(self.token(depth + 1)?),
                    }
                }
            }
            Some(b'"') => {
                self.pos += 1;
                let mut s = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err(broken("unclosed quoted string")),
                        Some(b'"') => {
                            self.pos += 1;
                            return Ok(Token::Str(s));
                        }
                        Some(b'\\') => {
                            self.pos += 1;
                            let c = self.peek().ok_or_else(|| broken("bad escape"))?;
                            s.push(c);
                            self.pos += 1;
                        }
                        Some(c) => {
                            s.push(c);
                            self.pos += 1;
                        }
                    }
                }
            }
            Some(b'{') => {
                let line = self.line();
                if line.last() != Some(&b'}') || self.seg >= self.r.literals.len() {
                    return Err(broken("a literal not at the end of a line"));
                }
                let lit = self.r.literals[self.seg].clone();
                self.seg += 1;
                self.pos = 0;
                Ok(Token::Str(lit))
            }
            Some(_) => {
                let line = self.r.lines.get(self.seg).map(Vec::as_slice).unwrap_or(b"");
                let start = self.pos;
                let mut bracket = 0usize;
                while let Some(&c) = line.get(self.pos) {
                    match c {
                        b'[' => bracket += 1,
                        b']' if bracket > 0 => bracket -= 1,
                        b' ' | b'(' | b')' if bracket == 0 => break,
                        b'"' | b'{' if bracket == 0 => break,
                        _ => {}
                    }
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(broken("unexpected character"));
                }
                let a = String::from_utf8_lossy(&line[start..self.pos]).into_owned();
                if a.eq_ignore_ascii_case("NIL") {
                    Ok(Token::Nil)
                } else {
                    Ok(Token::Atom(a))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Vec<Response> {
        let mut r = Reader::new(bytes);
        let mut out = Vec::new();
        while let Ok(x) = r.response() {
            out.push(x);
        }
        out
    }

    #[test]
    fn reads_fetch_with_literal() {
        let rs = read(b"* 12 FETCH (UID 7 FLAGS (\\Seen $Label1) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 5 BODY[] {5}\r\nab\r\nc)\r\na1 OK [READ-ONLY] done\r\n");
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].kind(), Kind::Untagged);
        let t = rs[0].tokens().unwrap();
        assert_eq!(t[0], Token::Atom("12".into()));
        assert_eq!(t[1], Token::Atom("FETCH".into()));
        let Token::List(items) = &t[2] else { panic!() };
        assert_eq!(
            items[3],
            Token::List(vec![
                Token::Atom("\\Seen".into()),
                Token::Atom("$Label1".into())
            ])
        );
        assert_eq!(items[8], Token::Atom("BODY[]".into()));
        assert_eq!(items[9], Token::Str(b"ab\r\nc".to_vec()));
        assert_eq!(rs[1].kind(), Kind::Tagged("a1"));
        assert_eq!(
            rs[1].status(),
            Some((Status::Ok, Some("READ-ONLY".into()), "done".into()))
        );
    }

    #[test]
    fn reads_list_and_sections() {
        let rs = read(b"* LIST (\\HasNoChildren) \"/\" \"A \\\"b\\\"\"\r\n* LIST () NIL {3}\r\nx y\r\n* 1 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {4}\r\nab\r\n)\r\n");
        let t = rs[0].tokens().unwrap();
        assert_eq!(t[2], Token::Str(b"/".to_vec()));
        assert_eq!(t[3], Token::Str(b"A \"b\"".to_vec()));
        let t = rs[1].tokens().unwrap();
        assert_eq!(
            (t[2].clone(), t[3].clone()),
            (Token::Nil, Token::Str(b"x y".to_vec()))
        );
        let t = rs[2].tokens().unwrap();
        let Token::List(items) = &t[2] else { panic!() };
        assert_eq!(
            items[0],
            Token::Atom("BODY[HEADER.FIELDS (MESSAGE-ID)]".into())
        );
    }

    #[test]
    fn bounds_input() {
        let mut long = vec![b'x'; MAX_LINE + 10];
        long.extend_from_slice(b"\r\n");
        assert!(Reader::new(long.as_slice()).response().is_err());
        let huge = format!("* 1 FETCH (BODY[] {{{}}}\r\n", MAX_LITERAL + 1);
        assert!(Reader::new(huge.as_bytes()).response().is_err());
        assert!(Reader::new(&b"* 1 FETCH (BODY[] {5}\r\nab"[..])
            .response()
            .is_err());
        assert!(Reader::new(&b"* LIST (((("[..]).response().is_err());
        let r = Reader::new(&b"* X (((\r\n"[..]).response().unwrap();
        assert!(r.tokens().is_err());
    }
}
