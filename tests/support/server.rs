//! `attache serve` in tests: a free port to listen on, waiting until it
//! answers, and JSON requests to it.

use std::time::{Duration, Instant};

use serde_json::Value;

/// A TCP port on 127.0.0.1 on which nothing listens (just now).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// An HTTP client that returns error statuses as answers, not errors.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// (status, JSON body) of a request to the server at `url`; `token` None
/// sends no Authorization. A body that is not JSON comes back as a string,
/// a failed connection as status 0.
pub fn request(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let agent = client();
    let full = format!("{url}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let r = match method {
        "GET" => {
            let mut rb = agent.get(&full);
            if let Some(h) = &auth {
                rb = rb.header("Authorization", h);
            }
            rb.call()
        }
        "DELETE" => {
            let mut rb = agent.delete(&full);
            if let Some(h) = &auth {
                rb = rb.header("Authorization", h);
            }
            rb.call()
        }
        _ => {
            let mut rb = agent.post(&full).header("Content-Type", "application/json");
            if let Some(h) = &auth {
                rb = rb.header("Authorization", h);
            }
            rb.send(body.unwrap_or(""))
        }
    };
    match r {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

/// Waits until the server at `url` answers `/health` (30 s at most).
pub fn wait_healthy(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while request(url, "GET", "/health", None, None).0 != 200 {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `attache serve` on a free port of 127.0.0.1, for the repository `repo`
/// (and its own state and cache beside it, as [`crate::attache`] sets),
/// with `token` as its single admin token and `args` after `serve --listen
/// ADDR`; up and answering when returned, killed when dropped.
pub struct Served {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Served {
    /// Starts it and waits until it answers `/health`.
    pub fn start(repo: &std::path::Path, token: &str, args: &[&str]) -> Self {
        Self::start_as(crate::attache(repo), token, args)
    }

    /// [`Served::start`] of `attache`, a command already set up with its
    /// repository, cache and state (an `s3://` repository's, say).
    pub fn start_as(mut attache: std::process::Command, token: &str, args: &[&str]) -> Self {
        let port = free_port();
        let child = attache
            .env("ATTACHE_TOKEN", token)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn attache serve");
        let s = Served {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        wait_healthy(&s.url);
        s
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
