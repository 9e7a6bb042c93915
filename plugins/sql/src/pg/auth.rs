//! Password authentication: cleartext, `md5`, and SCRAM-SHA-256 (RFC 5802 /
//! RFC 7677, without channel binding, since the plugin does not use TLS).
//! Trust needs nothing. The password is only ever held in memory for the
//! length of the login.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::crypto::{hex, hmac_sha256, md5, pbkdf2_sha256, sha256};

/// The `md5` method's answer: `"md5" + md5hex(md5hex(password + user) + salt)`.
pub(crate) fn md5_password(user: &str, password: &str, salt: [u8; 4]) -> String {
    let inner = hex(&md5(format!("{password}{user}").as_bytes()));
    let mut outer = inner.into_bytes();
    outer.extend_from_slice(&salt);
    format!("md5{}", hex(&md5(&outer)))
}

/// A SCRAM-SHA-256 client exchange in progress.
pub(crate) struct Scram {
    client_first_bare: String,
    nonce: String,
    password: String,
    expected_server_signature: Option<[u8; 32]>,
}

impl Scram {
    /// Starts an exchange with a client nonce (printable, no comma). The user
    /// name goes in the startup message; PostgreSQL ignores this one, so it
    /// is sent empty as libpq does.
    pub(crate) fn new(user: &str, password: &str, nonce: &str) -> Scram {
        Scram {
            client_first_bare: format!("n={},r={nonce}", sasl_name(user)),
            nonce: nonce.to_owned(),
            password: password.to_owned(),
            expected_server_signature: None,
        }
    }

    /// The client-first message.
    pub(crate) fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Given the server-first message, the client-final message.
    pub(crate) fn client_final(&mut self, server_first: &str) -> Result<String, String> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            if let Some(v) = part.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = part.strip_prefix("s=") {
                salt = Some(B64.decode(v).map_err(|e| format!("bad SCRAM salt: {e}"))?);
            } else if let Some(v) = part.strip_prefix("i=") {
                iterations = Some(v.parse::<u32>().map_err(|_| "bad SCRAM iteration count")?);
            } else if part.starts_with("m=") {
                return Err("the server asks for a SCRAM extension".into());
            }
        }
        let (nonce, salt, iterations) = match (nonce, salt, iterations) {
            (Some(n), Some(s), Some(i)) if i > 0 => (n, s, i),
            _ => {
                return Err(format!(
                    "malformed SCRAM server-first message {server_first:?}"
                ))
            }
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err("the server's SCRAM nonce does not extend ours".into());
        }
        let salted = pbkdf2_sha256(self.password.as_bytes(), &salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored_key = sha256(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac_sha256(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(client_signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac_sha256(&salted, b"Server Key");
        self.expected_server_signature = Some(hmac_sha256(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final message: the server proves it knew the
    /// password too.
    pub(crate) fn verify_final(&self, server_final: &str) -> Result<(), String> {
        if let Some(e) = server_final.strip_prefix("e=") {
            return Err(format!("SCRAM authentication failed: {e}"));
        }
        let v = server_final
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or("SCRAM server-final message without a verifier")?;
        let got = B64
            .decode(v)
            .map_err(|e| format!("bad SCRAM verifier: {e}"))?;
        match self.expected_server_signature {
            Some(exp) if exp.as_slice() == got.as_slice() => Ok(()),
            _ => Err("the server's SCRAM signature is wrong: it does not know the password".into()),
        }
    }
}

/// `=` and `,` escaped as SCRAM requires in a user name.
fn sasl_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// A client nonce: 18 random bytes as base64.
pub(crate) fn nonce() -> String {
    let mut bytes = [0u8; 18];
    fill_random(&mut bytes);
    B64.encode(bytes)
}

#[cfg(target_os = "wasi")]
#[allow(
    unsafe_code,
    reason = "getentropy is wasi-libc's C function; there is no safe binding in the SDK"
)]
fn fill_random(buf: &mut [u8]) {
    // wasi-libc's getentropy, backed by `wasi:random`.
    extern "C" {
        fn getentropy(buf: *mut u8, len: usize) -> i32;
    }
    for chunk in buf.chunks_mut(256) {
        // SAFETY: the pointer and length describe a live, writable slice.
        let rc = unsafe { getentropy(chunk.as_mut_ptr(), chunk.len()) };
        assert_eq!(rc, 0, "no entropy from wasi:random");
    }
}

#[cfg(not(target_os = "wasi"))]
fn fill_random(buf: &mut [u8]) {
    // Tests only: the plugin always runs on WASI.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = sha256(format!("{seed}{i}").as_bytes())[0];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677, section 3: the SCRAM-SHA-256 example exchange.
    #[test]
    fn scram_rfc7677_example() {
        let mut s = Scram::new("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(s.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let fin = s
            .client_final(
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(s
            .verify_final("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .is_err());
        assert!(s.verify_final("e=invalid-proof").is_err());
    }

    #[test]
    fn scram_refuses_a_foreign_nonce() {
        let mut s = Scram::new("", "pw", "abc");
        assert!(s.client_final("r=xyz123,s=QUJD,i=4096").is_err());
        assert!(s.client_final("r=abc,s=QUJD,i=4096").is_err());
    }

    #[test]
    fn md5_answer() {
        // md5(md5("secret" + "postgres") + salt), as libpq computes it.
        let inner = hex(&md5(b"secretpostgres"));
        let mut outer = inner.into_bytes();
        outer.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            md5_password("postgres", "secret", [1, 2, 3, 4]),
            format!("md5{}", hex(&md5(&outer)))
        );
        assert_eq!(md5_password("u", "p", [0; 4]).len(), 35);
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), "");
    }
}
