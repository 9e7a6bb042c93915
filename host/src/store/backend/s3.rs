//! A repository in an S3-compatible bucket: `s3://BUCKET/PREFIX`, each key
//! an object `PREFIX/KEY`.
//!
//! The I/O is done by the `object_store` crate (Apache Arrow's, used by
//! DataFusion, delta-rs and others), not by hand, and rather than `opendal`
//! because its API is exactly the one the store needs and no more: whole
//! and ranged GETs, `PutMode::Create` (a conditional `If-None-Match: *` PUT
//! whose 412 comes back as the typed `AlreadyExists`), listing, HEAD and
//! DELETE, with typed errors for a missing object and refused credentials,
//! its own retries with backoff, and settings read from the usual `AWS_*`
//! variables (`AWS_ENDPOINT_URL`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_SKIP_SIGNATURE` for anonymous access). Requests use path-style
//! addressing (`ENDPOINT/BUCKET/KEY`), which every S3-compatible server
//! (SeaweedFS, MinIO, Ceph) answers; `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`
//! switches to `BUCKET.ENDPOINT/KEY`. A plain `http://` endpoint is
//! allowed as given.
//!
//! The store is synchronous, so the backend owns a small tokio runtime of
//! its own and each call waits for its request there over a channel: that
//! works from any thread, including the blocking threads `attache serve`
//! runs jobs on and the store's own writer threads.
//!
//! Every request is logged at debug level as `s3 METHOD KEY` (target
//! `attache::store::backend::s3`; `ATTACHE_LOG=attache::store::backend::s3=debug`
//! shows them), so what a command costs in requests can be seen, and is
//! counted by the tests.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::TryStreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions};

use super::{Backend, BackendError, BackendErrorKind, Entry};
use crate::store::StoreError;

/// How an object-store repository's location starts.
pub(crate) const SCHEME: &str = "s3://";

/// Settings given on the command line, over the `AWS_*` variables.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    /// The S3 endpoint (`--s3-endpoint`), e.g. `http://127.0.0.1:8333`.
    pub endpoint: Option<String>,
    /// The region (`--s3-region`).
    pub region: Option<String>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Sets this process's command-line settings (once, at start).
pub(crate) fn configure(s: Settings) {
    let _ = SETTINGS.set(s);
}

/// A bucket and prefix, parsed from `s3://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    pub bucket: String,
    /// Without leading or trailing slashes; may be empty.
    pub prefix: String,
}

impl Location {
    pub(crate) fn parse(url: &str) -> Result<Self, StoreError> {
        let invalid = |why: &str| {
            StoreError::Backend(BackendError {
                kind: BackendErrorKind::Invalid,
                url: url.to_owned(),
                what: why.to_owned(),
                source: None,
            })
        };
        let rest = url
            .strip_prefix(SCHEME)
            .ok_or_else(|| invalid("not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("no bucket: write s3://BUCKET/PREFIX"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..")
            || prefix.contains("//")
            || bucket.contains(['?', '#'])
            || prefix.contains(['?', '#'])
        {
            return Err(invalid(
                "the prefix must be plain names separated by single slashes",
            ));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

/// A repository in a bucket.
pub(crate) struct S3Backend {
    store: Arc<AmazonS3>,
    /// Dropped without blocking (see [`Drop`]).
    rt: Option<tokio::runtime::Runtime>,
    loc: Location,
    /// The endpoint, for messages.
    endpoint: String,
}

/// Whether an error of the client is a failure to reach the endpoint.
fn unreachable(e: &object_store::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            return matches!(h.kind(), K::Connect | K::Timeout | K::Interrupted);
        }
        cur = c.source();
    }
    false
}

/// The endpoint the client will use: the flag, else `AWS_ENDPOINT_URL` (or
/// `AWS_ENDPOINT`), else none (AWS itself).
fn endpoint(settings: &Settings) -> Option<String> {
    settings.endpoint.clone().or_else(|| {
        ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    })
}

impl S3Backend {
    /// Connects to the bucket of `url` and checks that it is there and the
    /// credentials are accepted (one listing request), so that a wrong
    /// setting is said at once, naming the URL.
    pub(crate) fn open(url: &str) -> Result<Self, StoreError> {
        let loc = Location::parse(url)?;
        let settings = SETTINGS.get().cloned().unwrap_or_default();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&loc.bucket)
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..Default::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(300)),
            );
        let endpoint = endpoint(&settings);
        if let Some(e) = &endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(r) = &settings.region {
            b = b.with_region(r);
        }
        let store = b.build().map_err(|e| {
            StoreError::Backend(BackendError {
                kind: BackendErrorKind::Invalid,
                url: url.to_owned(),
                what: "cannot set up the S3 client".into(),
                source: Some(Box::new(e)),
            })
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-io")
            .enable_all()
            .build()
            .map_err(StoreError::Io)?;
        let me = Self {
            store: Arc::new(store),
            rt: Some(rt),
            loc,
            endpoint: endpoint.unwrap_or_else(|| "AWS".into()),
        };
        me.probe()?;
        Ok(me)
    }

    /// Lists at most one object of the prefix: a missing bucket, refused
    /// credentials or an endpoint that does not answer fail here.
    fn probe(&self) -> Result<(), StoreError> {
        let (store, prefix) = (self.store.clone(), self.path(""));
        let listed = self.run(async move {
            let mut s = store.list(Some(&prefix));
            s.try_next().await.map(drop)
        })?;
        let Err(e) = listed else {
            return Ok(());
        };
        let (mut kind, mut what) = self.describe(&e);
        if kind == BackendErrorKind::Other {
            // The client types a listing's 404 (no such bucket) no more
            // than any other failure; a HEAD's it does. Where a listing
            // fails and an object of the bucket is "not found", the bucket
            // is: a bucket that exists answers both.
            let (store, key) = (self.store.clone(), self.path("config"));
            if let Err(h) = self.run(async move { store.head(&key).await })? {
                (kind, what) = match self.describe(&h) {
                    (BackendErrorKind::NotFound, _) => {
                        (BackendErrorKind::NoBucket, "no such bucket".to_owned())
                    }
                    other => other,
                };
            }
        }
        Err(StoreError::Backend(BackendError {
            kind,
            url: format!("{SCHEME}{}", self.loc.bucket),
            what: format!("{what} (endpoint {})", self.endpoint),
            source: Some(Box::new(e)),
        }))
    }

    /// The object path of `key`.
    fn path(&self, key: &str) -> ObjectPath {
        match (self.loc.prefix.is_empty(), key.is_empty()) {
            (true, _) => ObjectPath::from(key),
            (false, true) => ObjectPath::from(self.loc.prefix.as_str()),
            (false, false) => ObjectPath::from(format!("{}/{key}", self.loc.prefix)),
        }
    }

    fn url(&self, key: &str) -> String {
        format!("{SCHEME}{}/{}", self.loc.bucket, self.path(key))
    }

    /// Runs a request on the backend's runtime and waits for it.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let Some(rt) = &self.rt else {
            return Err(StoreError::Io(std::io::Error::other(
                "the S3 client was shut down",
            )));
        };
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| {
            StoreError::Io(std::io::Error::other(
                "an S3 request stopped without an answer",
            ))
        })
    }

    fn describe(&self, e: &object_store::Error) -> (BackendErrorKind, String) {
        use object_store::Error as E;
        match e {
            E::NotFound { .. } => (BackendErrorKind::NotFound, "no such object".into()),
            E::AlreadyExists { .. } | E::Precondition { .. } => (
                BackendErrorKind::Exists,
                "exists already: the conditional write was refused (412)".into(),
            ),
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => (
                BackendErrorKind::Denied,
                "access denied: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            ),
            e if unreachable(e) => (
                BackendErrorKind::Unreachable,
                format!("cannot reach the S3 endpoint {}", self.endpoint),
            ),
            _ => (BackendErrorKind::Other, "the S3 request failed".into()),
        }
    }

    fn err(&self, key: &str, e: object_store::Error) -> StoreError {
        let (kind, what) = self.describe(&e);
        StoreError::Backend(BackendError {
            kind,
            url: self.url(key),
            what,
            source: Some(Box::new(e)),
        })
    }

    fn put(&self, key: &str, bytes: &[u8], mode: PutMode) -> Result<(), StoreError> {
        tracing::debug!("s3 PUT {key} ({} bytes)", bytes.len());
        let (store, path) = (self.store.clone(), self.path(key));
        let payload = object_store::PutPayload::from(bytes.to_vec());
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        self.run(async move { store.put_opts(&path, payload, opts).await })?
            .map(drop)
            .map_err(|e| self.err(key, e))
    }
}

impl Drop for S3Backend {
    fn drop(&mut self) {
        // Without waiting: the backend may be dropped on an async thread.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Backend for S3Backend {
    fn name(&self, key: &str) -> PathBuf {
        PathBuf::from(self.url(key))
    }

    fn prepare(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn read(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        tracing::debug!("s3 GET {key}");
        let (store, path) = (self.store.clone(), self.path(key));
        self.run(async move {
            match store.get(&path).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            }
        })?
        .map(|b| b.to_vec())
        .map_err(|e| self.err(key, e))
    }

    fn read_at(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let end = offset.saturating_add(buf.len() as u64);
        let get = |range: std::ops::Range<u64>| {
            tracing::debug!("s3 GET {key} bytes {}-{}", range.start, range.end);
            let (store, path) = (self.store.clone(), self.path(key));
            self.run(async move { store.get_range(&path, range).await })
        };
        match get(offset..end)? {
            Ok(b) => {
                let n = b.len().min(buf.len());
                buf[..n].copy_from_slice(&b[..n]);
                Ok(n)
            }
            Err(e @ object_store::Error::NotFound { .. }) => Err(self.err(key, e)),
            // A range past the object's end is refused (416): what is there.
            Err(e) => match self.size(key)? {
                Some(size) if size < end => {
                    if offset >= size {
                        return Ok(0);
                    }
                    let b = get(offset..size)?.map_err(|e| self.err(key, e))?;
                    let n = b.len().min(buf.len());
                    buf[..n].copy_from_slice(&b[..n]);
                    Ok(n)
                }
                _ => Err(self.err(key, e)),
            },
        }
    }

    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put(key, bytes, PutMode::Overwrite)
    }

    fn create(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put(key, bytes, PutMode::Create)
    }

    fn list(&self, dir: &str) -> Result<Vec<Entry>, StoreError> {
        tracing::debug!("s3 LIST {dir}/");
        let (store, path) = (self.store.clone(), self.path(dir));
        let metas = self
            .run(async move { store.list(Some(&path)).try_collect::<Vec<_>>().await })?
            .map_err(|e| self.err(dir, e))?;
        let base = self.path("");
        let strip = |loc: &str| -> Option<String> {
            let base = base.as_ref();
            if base.is_empty() {
                Some(loc.to_owned())
            } else {
                loc.strip_prefix(base)?.strip_prefix('/').map(str::to_owned)
            }
        };
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let key = strip(m.location.as_ref())?;
                Some(Entry { key, size: m.size })
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        tracing::debug!("s3 DELETE {key}");
        let (store, path) = (self.store.clone(), self.path(key));
        match self.run(async move { store.delete(&path).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key, e)),
        }
    }

    fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        tracing::debug!("s3 HEAD {key}");
        let (store, path) = (self.store.clone(), self.path(key));
        match self.run(async move { store.head(&path).await })? {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(key, e)),
        }
    }

    fn remote(&self) -> bool {
        true
    }
}

// The integration tests' SeaweedFS starter, shared rather than copied.
#[cfg(test)]
#[allow(
    dead_code,
    unreachable_pub,
    reason = "shared with tests/, which uses all of it"
)]
#[path = "../../../../tests/support/seaweed.rs"]
mod seaweed;

#[cfg(test)]
mod tests {
    use super::seaweed;
    use super::*;
    use crate::store::ErrorKind;

    /// Runs `f` with the `AWS_*` variables of `w` set (the test process's
    /// environment: these tests are the only ones that read them).
    fn with_env<T>(w: &seaweed::Seaweed, f: impl FnOnce() -> T) -> T {
        static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _g = ENV.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = std::process::Command::new("true");
        w.env(&mut c);
        for (k, v) in c.get_envs() {
            match v {
                // The lock above keeps these tests from racing each other
                // on the environment.
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
        f()
    }

    /// The backend contract, on a real S3 server: above all, a create-only
    /// write onto an existing key is refused with a 412, typed.
    #[test]
    fn s3_backend_keeps_the_contract_on_seaweedfs() {
        let w = seaweed::Seaweed::start();
        w.create_bucket("contract");
        with_env(&w, || {
            let b = S3Backend::open("s3://contract/some/prefix").unwrap();
            super::super::tests::contract(&b);
            let e = b.create("index/a", b"again").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Exists);
            assert!(
                e.to_string().contains("s3://contract/some/prefix/index/a"),
                "{e}"
            );
            // Another prefix of the same bucket is another repository.
            let other = S3Backend::open("s3://contract/other").unwrap();
            assert_eq!(other.size("index/a").unwrap(), None);
            // A missing bucket, wrong credentials, an endpoint that does
            // not answer: typed errors naming the URL, at open.
            let e = S3Backend::open("s3://no-such-bucket/x").err().unwrap();
            assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
            assert!(e.to_string().contains("s3://no-such-bucket"), "{e}");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "wrong");
            let e = S3Backend::open("s3://contract/x").err().unwrap();
            assert_eq!(e.kind(), ErrorKind::Denied, "{e}");
            std::env::set_var("AWS_ENDPOINT_URL", "http://127.0.0.1:1");
            let e = S3Backend::open("s3://contract/x").err().unwrap();
            assert!(
                matches!(&e, StoreError::Backend(b) if b.kind == BackendErrorKind::Unreachable),
                "{e}"
            );
            assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
        });
    }

    #[test]
    fn locations_parse() {
        let l = Location::parse("s3://bkt/a/b/").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("bkt", "a/b"));
        let l = Location::parse("s3://bkt").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("bkt", ""));
        for bad in ["s3:///x", "s3://b/../x", "s3://b/a//c", "s3://b/a?x"] {
            let e = Location::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Invalid, "{bad}: {e}");
        }
    }
}
