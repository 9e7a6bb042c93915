//! Messages of the PostgreSQL frontend/backend protocol, version 3.0:
//! encoding what the plugin sends and decoding what the server answers.
//! Pure functions on bytes; `conn.rs` moves them over the socket.

/// Protocol version 3.0 in the startup message.
pub(crate) const PROTOCOL_3_0: i32 = 196_608;

/// A message from the server, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Backend {
    /// `R`: an authentication request or result.
    Auth(Auth),
    /// `K`: process id and secret key for cancel requests.
    KeyData { pid: i32, key: i32 },
    /// `S`: a run-time parameter's value (`server_version`, ...).
    ParameterStatus { name: String, value: String },
    /// `Z`: ready for a new query; the transaction status (`I`, `T`, `E`).
    ReadyForQuery(u8),
    /// `T`: the columns of the rows that follow.
    RowDescription(Vec<String>),
    /// `D`: one row, each field text or NULL.
    DataRow(Vec<Option<Vec<u8>>>),
    /// `C`: a command finished, with its tag (`COPY 12`).
    CommandComplete(String),
    /// `I`: the query string was empty.
    EmptyQueryResponse,
    /// `E`: an error, with its fields.
    Error(ErrorFields),
    /// `N`: a notice, with the same fields as an error.
    Notice(ErrorFields),
    /// `H`: the server starts sending COPY data.
    CopyOutResponse,
    /// `G`: the server waits for COPY data.
    CopyInResponse,
    /// `d`: a piece of COPY data.
    CopyData(Vec<u8>),
    /// `c`: the end of COPY data.
    CopyDone,
    /// `A`: an asynchronous notification; ignored.
    Notification,
    /// `v`: the server supports an older minor protocol version.
    NegotiateProtocolVersion,
    /// Anything else, by its type byte.
    Other(u8),
}

/// The authentication requests the plugin knows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Auth {
    Ok,
    CleartextPassword,
    Md5Password([u8; 4]),
    /// SASL, with the mechanisms the server offers.
    Sasl(Vec<String>),
    SaslContinue(Vec<u8>),
    SaslFinal(Vec<u8>),
    /// Kerberos, GSSAPI, SSPI...: by code.
    Unsupported(i32),
}

/// The fields of an ErrorResponse or NoticeResponse, by their code byte.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ErrorFields {
    pub fields: Vec<(u8, String)>,
}

impl ErrorFields {
    pub(crate) fn get(&self, code: u8) -> Option<&str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_str())
    }

    /// The SQLSTATE (`28P01` for a wrong password).
    pub(crate) fn code(&self) -> &str {
        self.get(b'C').unwrap_or("")
    }

    /// `SEVERITY: message (DETAIL) HINT` in one line.
    pub(crate) fn describe(&self) -> String {
        let mut s = format!(
            "{}: {}",
            self.get(b'V').or(self.get(b'S')).unwrap_or("ERROR"),
            self.get(b'M').unwrap_or("(no message)")
        );
        if let Some(d) = self.get(b'D') {
            s.push_str(&format!(" ({d})"));
        }
        if let Some(h) = self.get(b'H') {
            s.push_str(&format!("; hint: {h}"));
        }
        if !self.code().is_empty() {
            s.push_str(&format!(" [SQLSTATE {}]", self.code()));
        }
        s
    }
}

/// Malformed input from the server.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WireError(pub String);

fn put_msg(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
}

fn put_cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// The startup message: protocol version and parameters (`user`,
/// `database`, and any run-time setting).
pub(crate) fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for (k, v) in params {
        put_cstr(&mut body, k);
        put_cstr(&mut body, v);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// `p`: a password (cleartext or md5 hash), NUL-terminated.
pub(crate) fn password(pw: &str) -> Vec<u8> {
    let mut body = Vec::new();
    put_cstr(&mut body, pw);
    let mut out = Vec::new();
    put_msg(&mut out, b'p', &body);
    out
}

/// `p` as SASLInitialResponse: the mechanism and the client-first message.
pub(crate) fn sasl_initial(mechanism: &str, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_cstr(&mut body, mechanism);
    body.extend_from_slice(&(data.len() as i32).to_be_bytes());
    body.extend_from_slice(data);
    let mut out = Vec::new();
    put_msg(&mut out, b'p', &body);
    out
}

/// `p` as SASLResponse: the next client message.
pub(crate) fn sasl_response(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_msg(&mut out, b'p', data);
    out
}

/// `Q`: a simple query.
pub(crate) fn query(sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    put_cstr(&mut body, sql);
    let mut out = Vec::new();
    put_msg(&mut out, b'Q', &body);
    out
}

/// `d`: COPY data, appended to `out`.
pub(crate) fn copy_data(out: &mut Vec<u8>, data: &[u8]) {
    put_msg(out, b'd', data);
}

/// `c`: end of COPY data.
pub(crate) fn copy_done() -> Vec<u8> {
    let mut out = Vec::new();
    put_msg(&mut out, b'c', &[]);
    out
}

/// `f`: the client gives up a COPY FROM STDIN with a reason.
pub(crate) fn copy_fail(reason: &str) -> Vec<u8> {
    let mut body = Vec::new();
    put_cstr(&mut body, reason);
    let mut out = Vec::new();
    put_msg(&mut out, b'f', &body);
    out
}

/// `X`: the client closes the session.
pub(crate) fn terminate() -> Vec<u8> {
    let mut out = Vec::new();
    put_msg(&mut out, b'X', &[]);
    out
}

/// A message's type byte, its body, and how many bytes it took.
pub(crate) type Split<'a> = (u8, &'a [u8], usize);

/// Splits one message off the front of `buf`: its type byte and body, and
/// how many bytes it took; `None` while incomplete.
pub(crate) fn split(buf: &[u8], max_len: usize) -> Result<Option<Split<'_>>, WireError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 || len as usize > max_len {
        return Err(WireError(format!(
            "message {:?} with impossible length {len}",
            buf[0] as char
        )));
    }
    let total = 1 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((buf[0], &buf[5..total], total)))
}

struct Cursor<'a> {
    b: &'a [u8],
    what: u8,
}

impl<'a> Cursor<'a> {
    fn err(&self) -> WireError {
        WireError(format!("truncated message {:?}", self.what as char))
    }
    fn i32(&mut self) -> Result<i32, WireError> {
        if self.b.len() < 4 {
            return Err(self.err());
        }
        let v = i32::from_be_bytes([self.b[0], self.b[1], self.b[2], self.b[3]]);
        self.b = &self.b[4..];
        Ok(v)
    }
    fn i16(&mut self) -> Result<i16, WireError> {
        if self.b.len() < 2 {
            return Err(self.err());
        }
        let v = i16::from_be_bytes([self.b[0], self.b[1]]);
        self.b = &self.b[2..];
        Ok(v)
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(self.err());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn cstr(&mut self) -> Result<String, WireError> {
        let end = self
            .b
            .iter()
            .position(|&c| c == 0)
            .ok_or_else(|| self.err())?;
        let s = String::from_utf8_lossy(&self.b[..end]).into_owned();
        self.b = &self.b[end + 1..];
        Ok(s)
    }
}

/// Decodes one backend message from its type byte and body.
pub(crate) fn decode(tag: u8, body: &[u8]) -> Result<Backend, WireError> {
    let mut c = Cursor { b: body, what: tag };
    Ok(match tag {
        b'R' => Backend::Auth(match c.i32()? {
            0 => Auth::Ok,
            3 => Auth::CleartextPassword,
            5 => {
                let s = c.bytes(4)?;
                Auth::Md5Password([s[0], s[1], s[2], s[3]])
            }
            10 => {
                let mut mechs = Vec::new();
                loop {
                    let m = c.cstr()?;
                    if m.is_empty() {
                        break;
                    }
                    mechs.push(m);
                }
                Auth::Sasl(mechs)
            }
            11 => Auth::SaslContinue(c.b.to_vec()),
            12 => Auth::SaslFinal(c.b.to_vec()),
            n => Auth::Unsupported(n),
        }),
        b'K' => Backend::KeyData {
            pid: c.i32()?,
            key: c.i32()?,
        },
        b'S' => Backend::ParameterStatus {
            name: c.cstr()?,
            value: c.cstr()?,
        },
        b'Z' => Backend::ReadyForQuery(*c.bytes(1)?.first().unwrap_or(&b'I')),
        b'T' => {
            let n = c.i16()?;
            let mut names = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                names.push(c.cstr()?);
                // table oid, column number, type oid, size, modifier, format
                c.bytes(4 + 2 + 4 + 2 + 4 + 2)?;
            }
            Backend::RowDescription(names)
        }
        b'D' => {
            let n = c.i16()?;
            let mut fields = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                let len = c.i32()?;
                if len < 0 {
                    fields.push(None);
                } else {
                    fields.push(Some(c.bytes(len as usize)?.to_vec()));
                }
            }
            Backend::DataRow(fields)
        }
        b'C' => Backend::CommandComplete(c.cstr()?),
        b'I' => Backend::EmptyQueryResponse,
        b'E' | b'N' => {
            let mut fields = Vec::new();
            loop {
                let code = *c.bytes(1)?.first().unwrap();
                if code == 0 {
                    break;
                }
                fields.push((code, c.cstr()?));
            }
            let f = ErrorFields { fields };
            if tag == b'E' {
                Backend::Error(f)
            } else {
                Backend::Notice(f)
            }
        }
        b'H' => Backend::CopyOutResponse,
        b'G' => Backend::CopyInResponse,
        b'd' => Backend::CopyData(body.to_vec()),
        b'c' => Backend::CopyDone,
        b'A' => Backend::Notification,
        b'v' => Backend::NegotiateProtocolVersion,
        other => Backend::Other(other),
    })
}

/// Quotes an identifier as PostgreSQL's `quote_ident` does, always.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal (standard_conforming_strings is on since 9.1,
/// and the plugin checks it at connection): `'it''s'`.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_layout() {
        let m = startup(&[("user", "u"), ("database", "d")]);
        assert_eq!(&m[0..4], &(m.len() as i32).to_be_bytes());
        assert_eq!(&m[4..8], &[0, 3, 0, 0]);
        assert_eq!(&m[8..], b"user\0u\0database\0d\0\0");
    }

    #[test]
    fn query_and_password_layout() {
        assert_eq!(query("SELECT 1"), b"Q\0\0\0\x0dSELECT 1\0".to_vec());
        assert_eq!(password("pw"), b"p\0\0\0\x07pw\0".to_vec());
        let s = sasl_initial("SCRAM-SHA-256", b"n,,n=,r=x");
        assert_eq!(s[0], b'p');
        assert_eq!(&s[5..19], b"SCRAM-SHA-256\0");
        assert_eq!(&s[19..23], &9i32.to_be_bytes());
        assert_eq!(&s[23..], b"n,,n=,r=x");
        let mut d = Vec::new();
        copy_data(&mut d, b"1\tx\n");
        assert_eq!(d, b"d\0\0\0\x081\tx\n".to_vec());
        assert_eq!(copy_done(), b"c\0\0\0\x04".to_vec());
        assert_eq!(terminate(), b"X\0\0\0\x04".to_vec());
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_msg(&mut v, tag, body);
        v
    }

    #[test]
    fn splits_partial_and_whole_messages() {
        let m = msg(b'Z', b"I");
        assert_eq!(split(&m[..4], 1 << 20).unwrap(), None);
        assert_eq!(split(&m[..5], 1 << 20).unwrap(), None);
        let (tag, body, used) = split(&m, 1 << 20).unwrap().unwrap();
        assert_eq!((tag, body, used), (b'Z', &b"I"[..], 6));
        assert!(split(b"Z\0\0\0\x02", 1 << 20).is_err());
        assert!(split(b"Z\x7f\0\0\0", 1 << 20).is_err());
    }

    #[test]
    fn decodes_backend_messages() {
        assert_eq!(
            decode(b'R', &0i32.to_be_bytes()).unwrap(),
            Backend::Auth(Auth::Ok)
        );
        let mut md5 = 5i32.to_be_bytes().to_vec();
        md5.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            decode(b'R', &md5).unwrap(),
            Backend::Auth(Auth::Md5Password([1, 2, 3, 4]))
        );
        let mut sasl = 10i32.to_be_bytes().to_vec();
        sasl.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        assert_eq!(
            decode(b'R', &sasl).unwrap(),
            Backend::Auth(Auth::Sasl(vec![
                "SCRAM-SHA-256-PLUS".into(),
                "SCRAM-SHA-256".into()
            ]))
        );
        let mut row = 2i16.to_be_bytes().to_vec();
        row.extend_from_slice(&2i32.to_be_bytes());
        row.extend_from_slice(b"ab");
        row.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(
            decode(b'D', &row).unwrap(),
            Backend::DataRow(vec![Some(b"ab".to_vec()), None])
        );
        let mut desc = 1i16.to_be_bytes().to_vec();
        desc.extend_from_slice(b"col\0");
        desc.extend_from_slice(&[0; 18]);
        assert_eq!(
            decode(b'T', &desc).unwrap(),
            Backend::RowDescription(vec!["col".into()])
        );
        let err = decode(
            b'E',
            b"SERROR\0VFATAL\0C28P01\0Mpassword authentication failed for user \"u\"\0\0",
        )
        .unwrap();
        let Backend::Error(f) = err else { panic!() };
        assert_eq!(f.code(), "28P01");
        assert_eq!(
            f.describe(),
            "FATAL: password authentication failed for user \"u\" [SQLSTATE 28P01]"
        );
        assert_eq!(
            decode(b'C', b"COPY 3\0").unwrap(),
            Backend::CommandComplete("COPY 3".into())
        );
        assert!(decode(b'D', &[0, 1, 0, 0, 0, 9, b'x']).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
