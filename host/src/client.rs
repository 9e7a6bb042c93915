//! The command line as a client of `attache serve` (`--server URL`).

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::jobs::Progress;
use crate::progress::Display;

/// Percent-encodes a value for a query string to the server: everything
/// but RFC 3986's unreserved characters, so that `/`, `&`, `=` or `#` in a
/// name, a path prefix or a time never splits the query.
pub(crate) fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether a job's view (`GET /jobs/{id}`) shows it ended: anything but
/// queued or running (succeeded, failed, cancelled, or interrupted by a
/// server that died).
pub(crate) fn ended(job: &Value) -> bool {
    !matches!(job["status"].as_str(), Some("queued" | "running"))
}

pub(crate) struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the server at `base`; `ca_file` (PEM) is the one CA
    /// trusted for `https://`, instead of the system's.
    pub(crate) fn new(
        base: &str,
        token: Option<String>,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let token = token.context(
            "talking to a server needs its token: set ATTACHE_TOKEN or pass --token-file",
        )?;
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(f) = ca_file {
            let pem = std::fs::read(f)
                .with_context(|| format!("cannot read the CA file {}", f.display()))?;
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                if let ureq::tls::PemItem::Certificate(c) =
                    item.with_context(|| format!("the CA file {} is not PEM", f.display()))?
                {
                    certs.push(c);
                }
            }
            anyhow::ensure!(
                !certs.is_empty(),
                "the CA file {} holds no certificate",
                f.display()
            );
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent,
        })
    }

    fn answer(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        what: &str,
    ) -> anyhow::Result<Value> {
        let mut r = r.with_context(|| format!("{what}: cannot reach {}", self.base))?;
        let status = r.status();
        let body: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "{what}: server answered {status}: {}",
                body["error"].as_str().unwrap_or("(no reason given)")
            );
        }
        Ok(body)
    }

    pub(crate) fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        self.answer(r, &format!("GET {path}"))
    }

    pub(crate) fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .agent
            .delete(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        self.answer(r, &format!("DELETE {path}"))
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .send_json(body);
        self.answer(r, &format!("POST {path}"))
    }

    /// Submits a job and follows it to its end; returns its final state.
    pub(crate) fn run_job(&self, body: &Value, what: &str) -> anyhow::Result<Value> {
        let job = self.post("/jobs", body)?;
        let id = job["id"]
            .as_str()
            .context("the server returned no job id")?
            .to_owned();
        let display = Display::new(what);
        loop {
            let j = self.get(&format!("/jobs/{id}"))?;
            if let Ok(p) = serde_json::from_value::<Progress>(j["progress"].clone()) {
                display.update(&p);
            }
            if j["status"] == "succeeded" {
                display.finish();
                return Ok(j);
            }
            if ended(&j) {
                display.finish();
                bail!(
                    "job {id} {}: {}",
                    j["status"].as_str().unwrap_or("?"),
                    j["error"].as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_keep_only_unreserved_characters() {
        assert_eq!(super::query_value("hv1/vm-a_b.c~"), "hv1%2Fvm-a_b.c~");
        assert_eq!(super::query_value("a&b=c #ü"), "a%26b%3Dc%20%23%C3%BC");
    }
}
