//! Headless Chromium driven over the DevTools protocol, for the console's
//! tests: navigate, evaluate JavaScript, type and press keys, wait for a
//! condition, emulate 200% zoom and take screenshots.
//!
//! A few protocol methods over one WebSocket (`tungstenite`) are all the
//! tests need; the crates that generate the whole protocol
//! (`headless_chrome`, `chromiumoxide`) compile for minutes.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The Chromium binary: `$CHROMIUM`, else `chromium` (Debian's package).
fn binary() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// A headless Chromium of its own (a fresh profile), driven over the
/// DevTools protocol on one page target.
pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// A fresh headless Chromium (own profile) with one 1280×900 page.
    pub fn launch() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (make setup installs it): {e}", binary()));
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let port = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("chromium exited before it listened"),
            };
            if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                break rest
                    .split('/')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .expect("a port in the DevTools line");
            }
        };
        // Keep draining its stderr so that it never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        let targets: Value = serde_json::from_str(
            &crate::server::client()
                .get(format!("http://127.0.0.1:{port}/json/list"))
                .call()
                .expect("DevTools target list")
                .body_mut()
                .read_to_string()
                .expect("body"),
        )
        .expect("JSON target list");
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let (ws, _) = tungstenite::connect(page).expect("DevTools WebSocket");
        let mut b = Browser {
            child,
            ws,
            next: 0,
            _profile: profile,
        };
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    /// Calls a protocol method and returns its result (events that arrive
    /// meanwhile are skipped); an error answer panics.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("send to chromium");
        loop {
            let m = self.ws.read().expect("read from chromium");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).expect("JSON from chromium");
            if v["id"] == id {
                if !v["error"].is_null() {
                    panic!("{method}: {}", v["error"]);
                }
                return v["result"].clone();
            }
        }
    }

    /// Goes to `url` and waits until the page has loaded.
    pub fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        std::thread::sleep(Duration::from_millis(50));
        self.wait_for("document.readyState === 'complete'", "the page to load");
    }

    /// The value of a JavaScript expression (promises are awaited); an
    /// exception panics.
    pub fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{js}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits (60 s at most) until `js` is truthy, and returns its value.
    pub fn wait_for(&mut self, js: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.eval(js);
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.eval("document.body.innerText");
                panic!("timed out waiting for {what} ({js}); the page says:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the element `selector` names (as a user's click does:
    /// `element.click()`); it must exist.
    pub fn click(&mut self, selector: &str) {
        let js = format!(
            "(() => {{ const e = document.querySelector({s}); if (!e) return false; e.click(); return true; }})()",
            s = json!(selector)
        );
        assert_eq!(self.eval(&js), json!(true), "no element {selector}");
    }

    /// Sets a form field's value as typing would (an `input` event).
    pub fn fill(&mut self, selector: &str, value: &str) {
        let js = format!(
            "(() => {{ const e = document.querySelector({s}); if (!e) return false; e.value = {v}; e.dispatchEvent(new Event('input', {{bubbles: true}})); return true; }})()",
            s = json!(selector),
            v = json!(value)
        );
        assert_eq!(self.eval(&js), json!(true), "no field {selector}");
    }

    /// Types text into the focused element with the keyboard.
    pub fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({ "text": text }));
    }

    /// Presses a key (`Enter`, `Tab`, ...) on the focused element.
    pub fn press(&mut self, key: &str) {
        let (code, text) = match key {
            "Enter" => (13, "\r"),
            "Tab" => (9, ""),
            " " => (32, " "),
            _ => panic!("press: unknown key {key}"),
        };
        let mut down =
            json!({ "type": "keyDown", "key": key, "code": key, "windowsVirtualKeyCode": code });
        if !text.is_empty() {
            down["text"] = json!(text);
        }
        self.call("Input.dispatchKeyEvent", down);
        self.call(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyUp", "key": key, "code": key, "windowsVirtualKeyCode": code }),
        );
    }

    /// Emulates browser zoom: the page laid out `factor` times larger
    /// (a viewport of 1280/factor CSS pixels at `factor` device pixels
    /// each); 1 resets.
    pub fn zoom(&mut self, factor: f64) {
        if factor == 1.0 {
            self.call("Emulation.clearDeviceMetricsOverride", json!({}));
        } else {
            self.call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": (1280.0 / factor) as u32, "height": (900.0 / factor) as u32,
                        "deviceScaleFactor": factor, "mobile": false }),
            );
        }
    }

    /// Saves a PNG of the page (all of it, not only the window) to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let r = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}
