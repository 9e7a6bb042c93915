//! One session with a PostgreSQL server over TCP: start-up, login, simple
//! queries, and COPY in both directions, streamed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::auth::{self, Scram};
use super::wire::{self, Auth, Backend, ErrorFields};
use attache_plugin_sdk::PluginError;

/// Longest backend message accepted (a DataRow of a huge text value).
const MAX_MESSAGE: usize = 1 << 30;
/// How much COPY data is sent per CopyData message.
pub(crate) const COPY_CHUNK: usize = 256 * 1024;
/// How much is read from the socket at a time.
const READ_PIECE: usize = 256 * 1024;

/// Where and as whom to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Login {
    pub user: String,
    pub addr: SocketAddr,
    pub database: String,
}

/// Rows of a simple query, every field as text or NULL.
pub(crate) type Rows = Vec<Vec<Option<String>>>;

pub(crate) struct Conn {
    stream: TcpStream,
    /// Read buffer: bytes `start..end` are received and not yet consumed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pub login: Login,
    pub server_version: String,
}

impl Conn {
    /// Connects and logs in. `password` is used only if the server asks.
    pub(crate) fn connect(login: &Login, password: Option<&str>) -> Result<Conn, PluginError> {
        let addr = login.addr;
        // A blocking connect: WASI reports a refused connection from it, while
        // connect_timeout's non-blocking path only fails at the first send.
        let stream = TcpStream::connect(addr).map_err(|e| {
            use std::io::ErrorKind::*;
            match e.kind() {
                PermissionDenied => PluginError::AccessDenied(format!(
                    "the job does not grant network access to {addr} (guest-runner --allow-net {addr}): {e}"
                )),
                ConnectionRefused => PluginError::Application(format!(
                    "cannot connect to PostgreSQL at {addr}: connection refused (is the server running and listening there?)"
                )),
                TimedOut => PluginError::Application(format!(
                    "cannot connect to PostgreSQL at {addr}: timed out"
                )),
                _ => PluginError::Application(format!(
                    "cannot connect to PostgreSQL at {addr}: {e}"
                )),
            }
        })?;
        let _ = stream.set_nodelay(true);
        let mut c = Conn {
            stream,
            buf: vec![0; READ_PIECE],
            start: 0,
            end: 0,
            login: login.clone(),
            server_version: String::new(),
        };
        c.send(&wire::startup(&[
            ("user", &login.user),
            ("database", &login.database),
            ("application_name", "attache-sql"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO"),
            ("IntervalStyle", "postgres"),
            ("extra_float_digits", "3"),
        ]))?;
        c.authenticate(password)?;
        Ok(c)
    }

    fn who(&self) -> String {
        format!(
            "user {:?} at {} (database {:?})",
            self.login.user, self.login.addr, self.login.database
        )
    }

    fn authenticate(&mut self, password: Option<&str>) -> Result<(), PluginError> {
        let need_pw = |who: String| {
            PluginError::InvalidRequest(format!(
                "the server asks a password for {who} and the job gave none (attache: ATTACHE_APP_PASSWORD or --app-password-file; the plugin option password or password-file)"
            ))
        };
        let mut scram: Option<Scram> = None;
        let mut standard_strings = true;
        loop {
            match self.recv()? {
                Backend::Auth(Auth::Ok) => {}
                Backend::Auth(Auth::CleartextPassword) => {
                    let pw = password.ok_or_else(|| need_pw(self.who()))?;
                    self.send(&wire::password(pw))?;
                }
                Backend::Auth(Auth::Md5Password(salt)) => {
                    let pw = password.ok_or_else(|| need_pw(self.who()))?;
                    let answer = auth::md5_password(&self.login.user, pw, salt);
                    self.send(&wire::password(&answer))?;
                }
                Backend::Auth(Auth::Sasl(mechs)) => {
                    if !mechs.iter().any(|m| m == "SCRAM-SHA-256") {
                        return Err(PluginError::Application(format!(
                            "the server offers only SASL mechanisms {mechs:?}; SCRAM-SHA-256 is supported"
                        )));
                    }
                    let pw = password.ok_or_else(|| need_pw(self.who()))?;
                    let s = Scram::new("", pw, &auth::nonce());
                    self.send(&wire::sasl_initial("SCRAM-SHA-256", s.client_first().as_bytes()))?;
                    scram = Some(s);
                }
                Backend::Auth(Auth::SaslContinue(data)) => {
                    let s = scram.as_mut().ok_or_else(|| proto("SASL continue without SASL"))?;
                    let msg = s
                        .client_final(&String::from_utf8_lossy(&data))
                        .map_err(PluginError::Application)?;
                    self.send(&wire::sasl_response(msg.as_bytes()))?;
                }
                Backend::Auth(Auth::SaslFinal(data)) => {
                    let s = scram.as_ref().ok_or_else(|| proto("SASL final without SASL"))?;
                    s.verify_final(&String::from_utf8_lossy(&data))
                        .map_err(PluginError::Application)?;
                }
                Backend::Auth(Auth::Unsupported(n)) => {
                    return Err(PluginError::Application(format!(
                        "the server asks for authentication method {n} (Kerberos, GSSAPI or SSPI), which the plugin does not support; use scram-sha-256, md5 or password"
                    )))
                }
                Backend::ParameterStatus { name, value } => {
                    if name == "server_version" {
                        self.server_version = value;
                    } else if name == "standard_conforming_strings" {
                        standard_strings = value == "on";
                    }
                }
                Backend::KeyData { .. } | Backend::Notice(_) => {}
                Backend::NegotiateProtocolVersion => {}
                Backend::ReadyForQuery(_) => break,
                Backend::Error(f) => return Err(login_error(&self.who(), &f)),
                other => return Err(proto(&format!("unexpected {other:?} during login"))),
            }
        }
        if !standard_strings {
            self.simple("SET standard_conforming_strings = on")?;
        }
        Ok(())
    }

    /// Sends bytes as they are.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> Result<(), PluginError> {
        self.stream
            .write_all(bytes)
            .map_err(|e| self.io_error("sending to", e))
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> PluginError {
        PluginError::Application(format!(
            "{what} PostgreSQL at {} failed: {e}",
            self.login.addr
        ))
    }

    /// Receives and decodes the next message.
    pub(crate) fn recv(&mut self) -> Result<Backend, PluginError> {
        let (tag, body) = self.next_raw()?;
        wire::decode(tag, &self.buf[body]).map_err(|e| proto(&e.0))
    }

    /// The next message, undecoded: its type byte and where its body lies
    /// in the read buffer (valid until the next call).
    fn next_raw(&mut self) -> Result<(u8, std::ops::Range<usize>), PluginError> {
        loop {
            match wire::split(&self.buf[self.start..self.end], MAX_MESSAGE) {
                Ok(Some((tag, body, used))) => {
                    let from = self.start + used - body.len();
                    let range = from..self.start + used;
                    self.start += used;
                    return Ok((tag, range));
                }
                Ok(None) => {}
                Err(e) => return Err(proto(&e.0)),
            }
            // Keep the unread bytes at the front; grow only for a message
            // larger than the buffer.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self
                .stream
                .read(&mut self.buf[self.end..])
                .map_err(|e| self.io_error("reading from", e))?;
            if n == 0 {
                return Err(PluginError::Application(format!(
                    "PostgreSQL at {} closed the connection",
                    self.login.addr
                )));
            }
            self.end += n;
        }
    }

    /// Reads until ReadyForQuery after an error, then returns the error.
    fn drain_error(&mut self, f: ErrorFields, sql: &str) -> Result<PluginError, PluginError> {
        loop {
            if let Backend::ReadyForQuery(_) = self.recv()? {
                return Ok(server_error(&f, sql));
            }
        }
    }

    /// Runs one or more statements; returns the rows of the last result.
    pub(crate) fn query(&mut self, sql: &str) -> Result<Rows, PluginError> {
        self.send(&wire::query(sql))?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.recv()? {
                Backend::RowDescription(_) => rows.clear(),
                Backend::DataRow(fields) => rows.push(
                    fields
                        .into_iter()
                        .map(|f| f.map(|b| String::from_utf8_lossy(&b).into_owned()))
                        .collect(),
                ),
                Backend::Error(f) => error = Some(f),
                Backend::ReadyForQuery(_) => break,
                Backend::CopyInResponse => {
                    self.send(&wire::copy_fail("unexpected COPY"))?;
                }
                _ => {}
            }
        }
        match error {
            Some(f) => Err(server_error(&f, sql)),
            None => Ok(rows),
        }
    }

    /// Runs statements whose rows do not matter.
    pub(crate) fn simple(&mut self, sql: &str) -> Result<(), PluginError> {
        self.query(sql).map(drop)
    }

    /// Runs `COPY ... TO STDOUT` and hands the data on in pieces of about
    /// `COPY_CHUNK` bytes. Returns the number of rows.
    pub(crate) fn copy_out(
        &mut self,
        sql: &str,
        mut out: impl FnMut(&[u8]) -> Result<(), PluginError>,
    ) -> Result<u64, PluginError> {
        self.send(&wire::query(sql))?;
        let mut pending: Vec<u8> = Vec::with_capacity(COPY_CHUNK + (1 << 16));
        let mut rows = None;
        loop {
            // Rows go from the read buffer to the pending piece without
            // being decoded into messages of their own.
            let (tag, body) = self.next_raw()?;
            if tag == b'd' {
                pending.extend_from_slice(&self.buf[body]);
                if pending.len() >= COPY_CHUNK {
                    // On the sink's error the session is abandoned with the
                    // COPY unfinished; the caller drops it.
                    out(&pending)?;
                    pending.clear();
                }
                continue;
            }
            match wire::decode(tag, &self.buf[body]).map_err(|e| proto(&e.0))? {
                Backend::CopyOutResponse => {}
                Backend::CopyDone => {}
                Backend::CommandComplete(tag) => {
                    rows = tag.strip_prefix("COPY ").and_then(|n| n.parse().ok())
                }
                Backend::Error(f) => return Err(self.drain_error(f, sql)?),
                Backend::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        if !pending.is_empty() {
            out(&pending)?;
        }
        rows.ok_or_else(|| proto("COPY finished without a row count"))
    }

    /// Runs `COPY ... FROM STDIN`, feeding it what `next` yields until
    /// `None`. Returns the number of rows. If `next` fails, the COPY is
    /// aborted and that error returned.
    pub(crate) fn copy_in(
        &mut self,
        sql: &str,
        mut next: impl FnMut() -> Result<Option<Vec<u8>>, PluginError>,
    ) -> Result<u64, PluginError> {
        self.send(&wire::query(sql))?;
        loop {
            match self.recv()? {
                Backend::CopyInResponse => break,
                Backend::Error(f) => return Err(self.drain_error(f, sql)?),
                Backend::Notice(_) | Backend::ParameterStatus { .. } => {}
                other => return Err(proto(&format!("unexpected {other:?} before COPY data"))),
            }
        }
        let mut failed = None;
        let mut out = Vec::with_capacity(COPY_CHUNK + 16);
        loop {
            match next() {
                Ok(Some(data)) => {
                    for piece in data.chunks(COPY_CHUNK) {
                        out.clear();
                        wire::copy_data(&mut out, piece);
                        self.send(&out)?;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match &failed {
            Some(e) => self.send(&wire::copy_fail(&format!("{e:?}")))?,
            None => self.send(&wire::copy_done())?,
        }
        let mut rows = None;
        let mut error = None;
        loop {
            match self.recv()? {
                Backend::CommandComplete(tag) => {
                    rows = tag.strip_prefix("COPY ").and_then(|n| n.parse().ok())
                }
                Backend::Error(f) => error = Some(f),
                Backend::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if let Some(f) = error {
            return Err(server_error(&f, sql));
        }
        rows.ok_or_else(|| proto("COPY finished without a row count"))
    }

    /// Ends the session politely.
    pub(crate) fn close(mut self) {
        let _ = self.send(&wire::terminate());
    }
}

fn proto(msg: &str) -> PluginError {
    PluginError::Application(format!("PostgreSQL protocol error: {msg}"))
}

/// An error the server sent for `sql`.
pub(crate) fn server_error(f: &ErrorFields, sql: &str) -> PluginError {
    let mut short: String = sql.chars().take(160).collect();
    if short.len() < sql.len() {
        short.push_str("...");
    }
    PluginError::Application(format!(
        "PostgreSQL {} while running: {short}",
        f.describe()
    ))
}

/// An error during login, with what the SQLSTATE means for the user.
fn login_error(who: &str, f: &ErrorFields) -> PluginError {
    let why = match f.code() {
        "28P01" => "wrong password".to_string(),
        "28000" => "no pg_hba.conf entry or role not permitted".to_string(),
        "3D000" => "the database does not exist".to_string(),
        "53300" => "too many connections".to_string(),
        "57P03" => "the server is starting up or shutting down".to_string(),
        _ => "login refused".to_string(),
    };
    PluginError::Application(format!(
        "PostgreSQL login failed for {who}: {why}: {}",
        f.describe()
    ))
}
