//! The data channel between the server and a runner inside a VM.
//!
//! One bidirectional byte pipe carries a job's data: in the guest a
//! virtio-serial port (`/dev/virtio-ports/attache.data`), on the server the
//! Unix socket QEMU connects that port to. The guest needs no network.
//!
//! A job is named by a random session id that the server passes on the
//! runner's command line. Both sides start with a hello naming it:
//!
//! ```text
//! hello    = "ATTACHE-CHANNEL1 " session "\n"        (session: 32 hex digits)
//!
//! backup   server → runner: hello, previous
//!          runner → server: hello, [ "Q" … ] "S", stream
//! restore  server → runner: hello, stream
//!          runner → server: hello
//! discover server → runner: hello
//!          runner → server: hello, reply
//!
//! previous = length: u64 little-endian, then that many bytes of the parent
//!            snapshot's catalog, one JSON item record per line
//! reply    = length: u64 little-endian, then that many bytes: the plugin's
//!            catalog entries as one JSON array (at most [`MAX_REPLY`])
//! ```
//!
//! In a backup the runner announces each phase with one byte before the
//! stream: `Q` says the application is quiesced and asks the server to
//! freeze the guest's filesystems (the server answers `F` when frozen or `N`
//! when not); `S` says the stream follows. The server thaws once the
//! stream's trailer has arrived and then sends `T`; a runner that has not
//! heard `T` by the freeze bound thaws the guest itself.
//!
//! The runner checks the server's hello strictly. The server skips bytes
//! before the runner's hello (at most [`MAX_STALE`]): what a killed earlier
//! job left in the port's buffers is thus never read as this job's data.

use std::io::{self, Read, Write};

/// Hello prefix, version 1 of this protocol.
pub const HELLO_PREFIX: &[u8] = b"ATTACHE-CHANNEL1 ";
/// Session ids are this many lowercase hex digits.
pub const SESSION_LEN: usize = 32;
/// Bytes the server skips looking for the runner's hello.
pub const MAX_STALE: u64 = 16 << 20;
/// Runner → server: quiesced, freeze the guest now.
pub const PHASE_FREEZE: u8 = b'Q';
/// Runner → server: the stream follows.
pub const PHASE_STREAM: u8 = b'S';
/// The largest discover reply the server reads: the guest is untrusted, and
/// a listing larger than this is no listing a person reads.
pub const MAX_REPLY: u64 = 16 << 20;
/// Server → runner: the filesystems are frozen.
pub const ACK_FROZEN: u8 = b'F';
/// Server → runner: not frozen (the guest refused); go on.
pub const ACK_NOT_FROZEN: u8 = b'N';
/// Server → runner, after the stream: the filesystems it froze are thawed.
/// Without it by the freeze bound, the runner thaws them itself
/// (`guest_runner::freeze`).
pub const ACK_THAWED: u8 = b'T';

/// What can go wrong on the channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("data channel I/O failed: {0}")]
    /// The channel's socket failed.
    Io(#[from] io::Error),
    #[error("invalid session id {0:?}: expected {SESSION_LEN} lowercase hex digits")]
    /// A session id that is not one.
    BadSession(String),
    #[error("the data channel does not start with this job's hello (another job's data, or not an Attaché server)")]
    /// Bytes that are not this job's hello.
    WrongHello,
    #[error("no hello from the runner in the first {0} bytes of the data channel")]
    /// No hello within this many bytes.
    NoHello(u64),
    #[error("the data channel closed before the runner's hello")]
    /// The channel closed before the hello.
    ClosedBeforeHello,
    #[error("unexpected byte {0:#04x} on the data channel where a phase was due")]
    /// A byte that is no phase.
    BadPhase(u8),
    #[error("the runner's reply of {0} bytes is larger than the {MAX_REPLY} bytes allowed")]
    /// A reply longer than [`MAX_REPLY`].
    ReplyTooLarge(u64),
}

/// Checks a session id.
pub fn check_session(session: &str) -> Result<(), ChannelError> {
    if session.len() == SESSION_LEN
        && session
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(ChannelError::BadSession(session.into()))
    }
}

/// The hello for `session`.
pub fn hello(session: &str) -> Result<Vec<u8>, ChannelError> {
    check_session(session)?;
    let mut h = HELLO_PREFIX.to_vec();
    h.extend_from_slice(session.as_bytes());
    h.push(b'\n');
    Ok(h)
}

/// Reads the peer's hello and requires it to name `session` (runner side).
pub fn expect_hello(r: &mut impl Read, session: &str) -> Result<(), ChannelError> {
    let want = hello(session)?;
    let mut got = vec![0; want.len()];
    r.read_exact(&mut got).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ChannelError::ClosedBeforeHello,
        _ => ChannelError::Io(e),
    })?;
    if got != want {
        return Err(ChannelError::WrongHello);
    }
    Ok(())
}

/// Reads until just past the hello naming `session`, skipping anything
/// before it (server side). Returns how many bytes were skipped.
pub fn seek_hello(r: &mut impl Read, session: &str) -> Result<u64, ChannelError> {
    let want = hello(session)?;
    // A sliding window over the last want.len() bytes, one byte at a time:
    // the hello comes first in every ordinary job, so this is short.
    let mut window: Vec<u8> = Vec::with_capacity(want.len());
    let mut skipped = 0u64;
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte) {
            Ok(0) => return Err(ChannelError::ClosedBeforeHello),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        if window.len() == want.len() {
            window.remove(0);
            skipped += 1;
            if skipped > MAX_STALE {
                return Err(ChannelError::NoHello(MAX_STALE));
            }
        }
        window.push(byte[0]);
        if window == want {
            return Ok(skipped);
        }
    }
}

/// Writes the previous catalog: its length, then its bytes.
pub fn write_previous(w: &mut impl Write, catalog: &[u8]) -> io::Result<()> {
    w.write_all(&(catalog.len() as u64).to_le_bytes())?;
    w.write_all(catalog)
}

/// Reads the previous catalog's length; the catalog's bytes follow.
pub fn read_previous_len(r: &mut impl Read) -> io::Result<u64> {
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    Ok(u64::from_le_bytes(len))
}

/// Writes a reply (runner side): its length, then its bytes.
pub fn write_reply(w: &mut impl Write, reply: &[u8]) -> Result<(), ChannelError> {
    if reply.len() as u64 > MAX_REPLY {
        return Err(ChannelError::ReplyTooLarge(reply.len() as u64));
    }
    w.write_all(&(reply.len() as u64).to_le_bytes())?;
    w.write_all(reply)?;
    Ok(())
}

/// Reads a reply (server side), refusing one longer than [`MAX_REPLY`]
/// before reading it.
pub fn read_reply(r: &mut impl Read) -> Result<Vec<u8>, ChannelError> {
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > MAX_REPLY {
        return Err(ChannelError::ReplyTooLarge(len));
    }
    let mut out = Vec::with_capacity(len as usize);
    r.take(len).read_to_end(&mut out)?;
    if out.len() as u64 != len {
        return Err(ChannelError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the reply ended after {} of its {len} bytes", out.len()),
        )));
    }
    Ok(out)
}

/// Reads one phase byte (server side).
pub fn read_phase(r: &mut impl Read) -> Result<u8, ChannelError> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    match b[0] {
        PHASE_FREEZE | PHASE_STREAM => Ok(b[0]),
        other => Err(ChannelError::BadPhase(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn hello_round_trip_and_strictness() {
        let h = hello(S).unwrap();
        expect_hello(&mut &h[..], S).unwrap();
        let other = hello("ffffffffffffffffffffffffffffffff").unwrap();
        assert!(matches!(
            expect_hello(&mut &other[..], S),
            Err(ChannelError::WrongHello)
        ));
        assert!(matches!(
            expect_hello(&mut &h[..10], S),
            Err(ChannelError::ClosedBeforeHello)
        ));
        for bad in ["", "ABCDEF", "0123456789abcdef0123456789abcdeg", "../"] {
            assert!(hello(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn replies_round_trip_and_are_bounded() {
        let mut w = Vec::new();
        write_reply(&mut w, b"[1,2]").unwrap();
        assert_eq!(read_reply(&mut &w[..]).unwrap(), b"[1,2]");
        // Cut short: an error, not a shorter reply.
        assert!(matches!(
            read_reply(&mut &w[..w.len() - 1]),
            Err(ChannelError::Io(_))
        ));
        // A length past the bound is refused before anything is read.
        let mut big = (MAX_REPLY + 1).to_le_bytes().to_vec();
        big.extend(b"x");
        assert!(matches!(
            read_reply(&mut &big[..]),
            Err(ChannelError::ReplyTooLarge(n)) if n == MAX_REPLY + 1
        ));
    }

    #[test]
    fn server_skips_stale_bytes_before_the_hello() {
        let mut data = b"stale tail of an earlier stream ATTACHE-CHANNEL1 ".to_vec();
        data.extend(hello("ffffffffffffffffffffffffffffffff").unwrap());
        let stale = data.len() as u64;
        data.extend(hello(S).unwrap());
        data.extend(b"Sstream");
        let mut r = &data[..];
        assert_eq!(seek_hello(&mut r, S).unwrap(), stale);
        assert_eq!(read_phase(&mut r).unwrap(), PHASE_STREAM);
        assert_eq!(r, b"stream");
        assert!(matches!(
            seek_hello(&mut &b"no hello here"[..], S),
            Err(ChannelError::ClosedBeforeHello)
        ));
        assert!(matches!(
            read_phase(&mut &b"x"[..]),
            Err(ChannelError::BadPhase(b'x'))
        ));
    }

    #[test]
    fn previous_is_length_prefixed() {
        let mut buf = Vec::new();
        write_previous(&mut buf, b"{\"id\":\"/a\"}\n").unwrap();
        buf.extend(b"rest");
        let mut r = &buf[..];
        let n = read_previous_len(&mut r).unwrap();
        let mut cat = vec![0; n as usize];
        r.read_exact(&mut cat).unwrap();
        assert_eq!(cat, b"{\"id\":\"/a\"}\n");
        assert_eq!(r, b"rest");
    }
}
