//! TLS for `attache serve`: with a certificate from a test CA (made here,
//! no key committed) the command line, given the CA with --ca-file or
//! ATTACHE_CA_FILE, works; a client that does not trust the CA is refused;
//! and plain HTTP on an address that is not loopback is refused unless
//! --insecure-http says otherwise.

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use attache_tests::attache;
use attache_tests::server::{free_port, request, wait_healthy};

const TOKEN: &str = "tls-test-token-0123456789";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A CA and a certificate for `localhost` and 127.0.0.1 it signed, as PEM
/// files `ca.pem`, `cert.pem`, `key.pem` in `dir`.
fn make_pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Attaché test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf certificate");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

fn cli(repo: &Path, args: &[&str]) -> Output {
    attache(repo)
        .env("ATTACHE_TOKEN", TOKEN)
        .env_remove("ATTACHE_CA_FILE")
        .args(args)
        .output()
        .expect("run attache")
}

#[test]
fn tls_with_a_private_ca_works_and_an_untrusting_client_is_refused() {
    let t = tempfile::tempdir().unwrap();
    make_pki(t.path());
    let repo = t.path().join("repo");
    let port = free_port();
    let (cert, key, ca) = (
        t.path().join("cert.pem"),
        t.path().join("key.pem"),
        t.path().join("ca.pem"),
    );
    let _server = Killed(
        attache(&repo)
            .env("ATTACHE_TOKEN", TOKEN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server"),
    );
    let url = format!("https://localhost:{port}");
    // Up when the trusting client gets an answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    let snapshots = |extra: &[&str]| {
        let mut args = vec!["--server", url.as_str()];
        args.extend_from_slice(extra);
        args.extend(["snapshots", "--json"]);
        cli(&repo, &args)
    };
    let ca_arg = ca.to_str().unwrap();
    loop {
        let out = snapshots(&["--ca-file", ca_arg]);
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the TLS server never answered a client that trusts its CA: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The CA from the environment works as well.
    let out = attache(&repo)
        .env("ATTACHE_TOKEN", TOKEN)
        .env("ATTACHE_CA_FILE", &ca)
        .args(["--server", &url, "snapshots", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A client that does not trust the CA is refused at the handshake.
    let out = snapshots(&[]);
    assert!(!out.status.success(), "a client without the CA was served");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("issuer"),
        "the refusal does not name the certificate: {err}"
    );
    // A CA that did not sign the server's certificate is no better.
    let other = tempfile::tempdir().unwrap();
    make_pki(other.path());
    let out = snapshots(&["--ca-file", other.path().join("ca.pem").to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "a client trusting another CA was served"
    );
    // Plain HTTP to the TLS port gets no answer.
    let (status, _) = request(
        &format!("http://127.0.0.1:{port}"),
        "GET",
        "/health",
        None,
        None,
    );
    assert_ne!(status, 200, "plain HTTP was answered on the TLS port");
}

fn serve_output(repo: &Path, listen: &str, extra: &[&str]) -> Child {
    attache(repo)
        .env("ATTACHE_TOKEN", TOKEN)
        .args(["serve", "--listen", listen])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server")
}

#[test]
fn plain_http_off_loopback_needs_insecure_http() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let mut child = serve_output(&repo, &listen, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve on {listen} without TLS kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = child.wait_with_output().unwrap().stderr;
    let err = String::from_utf8_lossy(&err);
    assert!(!status.success());
    assert!(
        err.contains("not a loopback address") && err.contains("--insecure-http"),
        "{err}"
    );
    // Nothing was served in the meantime.
    let (st, _) = request(
        &format!("http://127.0.0.1:{port}"),
        "GET",
        "/health",
        None,
        None,
    );
    assert_eq!(st, 0, "something answered on {listen}");

    // With --insecure-http it serves.
    let port = free_port();
    let _s = Killed(serve_output(
        &repo,
        &format!("0.0.0.0:{port}"),
        &["--insecure-http"],
    ));
    wait_healthy(&format!("http://127.0.0.1:{port}"));
    // Loopback needs nothing.
    let port = free_port();
    let _l = Killed(serve_output(&repo, &format!("127.0.0.1:{port}"), &[]));
    wait_healthy(&format!("http://127.0.0.1:{port}"));
}
