//! An IMAP4rev1 client (RFC 3501) with UIDPLUS (RFC 4315) and LITERAL+
//! (RFC 7888) where offered, over any byte stream (a `std::net::TcpStream`
//! inside wasm32-wasip2 or natively).

pub mod command;
pub mod response;
pub mod session;

pub use session::{Append, Auth, Fetched, MailboxInfo, MessageMeta, Selected, Session};
