//! Public keys from an identity provider's JWKS URL (its `jwks_uri`):
//! fetched at start, refreshed on the response's `Cache-Control: max-age`
//! (kept between [`MIN_REFRESH`] and [`MAX_REFRESH`]), and at once when a
//! JWT names a `kid` the ring does not hold, at most once per
//! [`UNKNOWN_KID_THROTTLE`] on the injected clock. One task fetches, so any
//! number of unknown-kid JWTs arriving together cause one request. The last
//! good keys stay in use while the provider is down or answers garbage; a
//! good answer replaces them all, so a key the provider dropped is rejected
//! after the refresh.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, watch};

use crate::domain::Clock;
use crate::identity::jwks::{VerificationKey, parse_key_set};

/// Shortest time between two scheduled refreshes, whatever `max-age` says.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);
/// Longest time between two scheduled refreshes.
pub const MAX_REFRESH: Duration = Duration::from_secs(3600);
/// The refresh period when the response has no usable `max-age`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// At most one fetch triggered by an unknown `kid` per this long.
pub const UNKNOWN_KID_THROTTLE: Duration = Duration::from_secs(10);
/// Longest a call whose JWT names an unknown `kid` waits for the refresh it
/// asked for (or the one already under way) before it is verified again.
pub const UNKNOWN_KID_WAIT: Duration = Duration::from_secs(2);
/// After a failed fetch, the next attempt comes this much later.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// Largest JWKS body read; a provider's set is a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Connecting gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole fetch (connect, TLS, headers, body) gives up after this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a JWKS URL setting cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksUrlError {
    /// Not a URL.
    #[error("not a URL")]
    Malformed,
    /// A scheme other than https or http.
    #[error("must start with https:// (or http:// to a loopback address)")]
    Scheme,
    /// Plain http to a host that is not loopback: keys would travel in clear.
    #[error(
        "plain http:// is allowed only to a loopback address (localhost, 127.0.0.0/8, [::1]); use https://"
    )]
    PlainHttpNotLoopback,
    /// No CA certificate found in the system's trust store.
    #[error("no CA certificate found in the system's trust store for https://")]
    NoRoots,
    /// The TLS set-up failed.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
}

/// A checked JWKS URL: https, or http to a loopback host.
#[derive(Clone, PartialEq, Eq)]
pub struct JwksUrl(http::Uri);

impl std::fmt::Debug for JwksUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwksUrl({self})")
    }
}

impl JwksUrl {
    /// Checks `text`.
    pub fn parse(text: &str) -> Result<JwksUrl, JwksUrlError> {
        let uri: http::Uri = text.parse().map_err(|_| JwksUrlError::Malformed)?;
        let host = uri.host().ok_or(JwksUrlError::Malformed)?;
        match uri.scheme_str() {
            Some("https") => Ok(JwksUrl(uri)),
            Some("http") if is_loopback(host) => Ok(JwksUrl(uri)),
            Some("http") => Err(JwksUrlError::PlainHttpNotLoopback),
            _ => Err(JwksUrlError::Scheme),
        }
    }

    fn is_https(&self) -> bool {
        self.0.scheme_str() == Some("https")
    }
}

/// Scheme, host, port and path only: a user, password or query string in
/// the setting may be a credential, and this is what the logs show.
impl std::fmt::Display for JwksUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.0.scheme_str().unwrap_or_default();
        let host = self.0.host().unwrap_or_default();
        write!(f, "{scheme}://{host}")?;
        if let Some(port) = self.0.port_u16() {
            write!(f, ":{port}")?;
        }
        f.write_str(self.0.path())
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The refresh period a `Cache-Control` value asks for, kept between
/// [`MIN_REFRESH`] and [`MAX_REFRESH`]; [`DEFAULT_REFRESH`] without a
/// `max-age`. `no-cache`/`no-store` ask for the shortest period.
pub fn refresh_period(cache_control: Option<&str>) -> Duration {
    let Some(value) = cache_control else {
        return DEFAULT_REFRESH;
    };
    let mut period = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, argument) = match directive.split_once('=') {
            Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            return MIN_REFRESH;
        }
        if name.eq_ignore_ascii_case("max-age")
            && let Some(seconds) = argument.and_then(|a| a.parse::<u64>().ok())
        {
            period = Some(Duration::from_secs(seconds));
        }
    }
    period.map_or(DEFAULT_REFRESH, |period| {
        period.clamp(MIN_REFRESH, MAX_REFRESH)
    })
}

/// Why one fetch brought no keys.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("answered HTTP {0}")]
    Status(http::StatusCode),
    #[error("body unreadable or over {MAX_BODY_BYTES} bytes: {0}")]
    Body(String),
    #[error("not a usable JWK set: {0}")]
    Parse(String),
}

/// The keys of one JWKS URL, swapped whole on each good fetch.
pub struct RemoteKeyRing {
    url: JwksUrl,
    client: Client<HttpsConnector<HttpConnector>, String>,
    keys: ArcSwap<HashMap<String, VerificationKey>>,
    last_body: std::sync::Mutex<Option<Vec<u8>>>,
    generation: AtomicU64,
    loaded: AtomicBool,
    unknown_kid: Notify,
    /// Counts the fetcher's answers to refresh requests: each completed
    /// fetch (good or not) and each request the throttle declined.
    answers: watch::Sender<u64>,
}

/// A refresh asked for by a JWT with an unknown `kid`: awaiting it waits for
/// the fetcher's next answer, bounded by [`UNKNOWN_KID_WAIT`].
#[derive(Debug)]
pub struct PendingRefresh {
    answers: watch::Receiver<u64>,
}

impl PendingRefresh {
    /// Resolves once the fetcher answered (a fetch completed, good or not,
    /// or the throttle declined), or after `bound`, or if the fetcher is
    /// gone. Never holds a lock while waiting.
    pub async fn answered_within(mut self, bound: Duration) {
        // Timeout and a stopped fetcher both mean: verify again with what is
        // held now.
        let _answered = tokio::time::timeout(bound, self.answers.changed()).await;
    }
}

impl std::fmt::Debug for RemoteKeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeyRing")
            .field("url", &self.url)
            .field("kids", &self.keys.load().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl RemoteKeyRing {
    /// A ring for `url`, empty until [`Self::run`] fetches. The TLS set-up
    /// (the system's roots, for https) happens here, so that its failure
    /// stops start-up.
    pub fn new(url: JwksUrl) -> Result<RemoteKeyRing, JwksUrlError> {
        let mut roots = rustls::RootCertStore::empty();
        if url.is_https() {
            // Unreadable individual certificates are skipped, as every
            // client does; none at all is an error.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(JwksUrlError::NoRoots);
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| JwksUrlError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(RemoteKeyRing {
            url,
            client,
            keys: ArcSwap::from_pointee(HashMap::new()),
            last_body: std::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            loaded: AtomicBool::new(false),
            unknown_kid: Notify::new(),
            answers: watch::Sender::new(0),
        })
    }

    /// The key for `kid`, if the provider's last good set holds it.
    pub fn get(&self, kid: &str) -> Option<VerificationKey> {
        self.keys.load().get(kid).cloned()
    }

    /// A JWT named a `kid` no ring holds: ask the fetcher for a refresh.
    /// Requests coalesce (one stored wake-up), so this never queues work.
    pub fn request_refresh(&self) {
        self.unknown_kid.notify_one();
    }

    /// Like [`Self::request_refresh`], and returns what to await for the
    /// fetcher's answer. The receiver is taken before the request, so an
    /// answer cannot slip between them.
    pub fn request_refresh_and_watch(&self) -> PendingRefresh {
        let mut answers = self.answers.subscribe();
        answers.borrow_and_update();
        self.unknown_kid.notify_one();
        PendingRefresh { answers }
    }

    fn answered(&self) {
        self.answers
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Whether a key was ever loaded from the URL (readiness).
    pub fn ever_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Changes whenever the keys change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Fetches now, then on schedule and on unknown-kid requests, until
    /// shutdown.
    pub async fn run(self: Arc<Self>, clock: Arc<dyn Clock>, mut shutdown: watch::Receiver<bool>) {
        let mut last_fetch: Option<DateTime<Utc>> = None;
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = self.unknown_kid.notified() => {
                    let now = clock.now();
                    // A clock that went backwards does not block refreshes
                    // until it catches up: it allows one, which restarts
                    // the window.
                    let throttled = last_fetch.is_some_and(|at| {
                        (now - at).to_std().unwrap_or(UNKNOWN_KID_THROTTLE) < UNKNOWN_KID_THROTTLE
                    });
                    if throttled {
                        // Waiting callers are refused now, not after the bound.
                        self.answered();
                        continue;
                    }
                }
                _ = shutdown.changed() => return,
            }
            last_fetch = Some(clock.now());
            let wait = self.refresh().await;
            self.answered();
            next = tokio::time::Instant::now() + wait;
        }
    }

    /// One fetch; returns how long until the next scheduled one.
    async fn refresh(&self) -> Duration {
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch()).await {
            Ok(Ok((body, period))) => {
                match self.install(body) {
                    Ok(Some(count)) => {
                        tracing::info!(url = %self.url, keys = count, refresh_seconds = period.as_secs(), "JWKS URL: keys loaded");
                    }
                    Ok(None) => {
                        tracing::debug!(url = %self.url, "JWKS URL: keys unchanged");
                    }
                    Err(error) => {
                        self.report_failure(&error);
                        return RETRY_AFTER_FAILURE;
                    }
                }
                period
            }
            Ok(Err(error)) => {
                self.report_failure(&error);
                RETRY_AFTER_FAILURE
            }
            Err(_) => {
                self.report_failure(&FetchError::Timeout(FETCH_TIMEOUT));
                RETRY_AFTER_FAILURE
            }
        }
    }

    fn report_failure(&self, error: &FetchError) {
        if self.ever_loaded() {
            tracing::warn!(url = %self.url, error = %error, "JWKS URL unusable: keeping the previous keys");
        } else {
            tracing::error!(url = %self.url, error = %error, "JWKS URL unusable and no key loaded yet: JWTs with a kid are refused, not ready");
        }
    }

    async fn fetch(&self) -> Result<(Vec<u8>, Duration), FetchError> {
        let request = http::Request::get(self.url.0.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(String::new())
            .map_err(|e| FetchError::Request(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| FetchError::Request(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status()));
        }
        let period = refresh_period(
            response
                .headers()
                .get(http::header::CACHE_CONTROL)
                .and_then(|value| value.to_str().ok()),
        );
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| FetchError::Body(e.to_string()))?
            .to_bytes();
        Ok((body.to_vec(), period))
    }

    /// Replaces the keys with `body`'s; `Ok(None)` if it is what is already
    /// held. A body that is not a usable set changes nothing.
    fn install(&self, body: Vec<u8>) -> Result<Option<usize>, FetchError> {
        let mut last_body = self
            .last_body
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last_body.as_deref() == Some(body.as_slice()) {
            return Ok(None);
        }
        let (keys, _skipped) = parse_key_set(&body).map_err(FetchError::Parse)?;
        let count = keys.len();
        self.keys.store(Arc::new(keys));
        *last_body = Some(body);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.loaded.store(true, Ordering::Release);
        Ok(Some(count))
    }
}

/// An error and its causes on one line (hyper's client error says little
/// on its own).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_kept_between_one_minute_and_one_hour() {
        let secs = |text: Option<&str>| refresh_period(text).as_secs();
        assert_eq!(secs(None), 300, "no header: the default");
        assert_eq!(secs(Some("public, max-age=600")), 600);
        assert_eq!(secs(Some("max-age=5")), 60, "too short: one minute");
        assert_eq!(secs(Some("max-age=0")), 60);
        assert_eq!(secs(Some("max-age=86400, must-revalidate")), 3600);
        assert_eq!(secs(Some("Max-Age = \"120\"")), 120);
        assert_eq!(secs(Some("no-cache")), 60);
        assert_eq!(secs(Some("public, no-store, max-age=900")), 60);
        assert_eq!(secs(Some("max-age=soon")), 300, "unparsable: the default");
        assert_eq!(secs(Some("max-age=-1")), 300);
        assert_eq!(secs(Some("")), 300);
        assert_eq!(secs(Some("max-age=99999999999999999999999")), 300);
    }

    #[test]
    fn https_anywhere_plain_http_only_to_loopback() {
        for good in [
            "https://idp.example.com/realms/x/protocol/openid-connect/certs",
            "https://10.0.0.1:8443/keys",
            "http://127.0.0.1:8080/jwks",
            "http://127.5.6.7/jwks",
            "http://localhost/jwks",
            "http://LOCALHOST:1/jwks",
            "http://[::1]:9000/jwks",
        ] {
            assert!(JwksUrl::parse(good).is_ok(), "{good}");
        }
        let logged = JwksUrl::parse("https://ops:hunter2@idp.example.com:8443/certs?key=s3cret")
            .map(|url| url.to_string());
        assert_eq!(logged.as_deref(), Ok("https://idp.example.com:8443/certs"));
        let debugged = JwksUrl::parse("https://ops:hunter2@idp.example.com/certs?key=s3cret")
            .map(|url| format!("{url:?}"));
        assert!(debugged.is_ok_and(|text| !text.contains("hunter2") && !text.contains("s3cret")));
        let cases = [
            (
                "http://idp.example.com/jwks",
                JwksUrlError::PlainHttpNotLoopback,
            ),
            ("http://10.0.0.1/jwks", JwksUrlError::PlainHttpNotLoopback),
            (
                "http://localhost.evil.example/jwks",
                JwksUrlError::PlainHttpNotLoopback,
            ),
            ("http://[::2]/jwks", JwksUrlError::PlainHttpNotLoopback),
            ("ftp://idp.example.com/jwks", JwksUrlError::Scheme),
            ("file:///etc/jwks.json", JwksUrlError::Malformed),
            ("idp.example.com/jwks", JwksUrlError::Malformed),
            ("not a url", JwksUrlError::Malformed),
            ("", JwksUrlError::Malformed),
        ];
        for (bad, error) in cases {
            assert_eq!(JwksUrl::parse(bad), Err(error), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_pending_refresh_waits_for_the_next_answer_or_the_bound()
    -> Result<(), Box<dyn std::error::Error>> {
        let ring = RemoteKeyRing::new(JwksUrl::parse("http://127.0.0.1:1/jwks")?)?;
        ring.answered();
        // An answer given before the request does not count.
        let pending = ring.request_refresh_and_watch();
        let bound = Duration::from_millis(300);
        let started = std::time::Instant::now();
        pending.answered_within(bound).await;
        assert!(started.elapsed() >= bound, "no answer: waits the bound");

        let pending = ring.request_refresh_and_watch();
        let answer = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            ring.answered();
        };
        let started = std::time::Instant::now();
        tokio::join!(pending.answered_within(Duration::from_secs(5)), answer);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the next answer ends the wait"
        );

        // Two callers waiting for the same refresh are both let go by it.
        let (first, second) = (
            ring.request_refresh_and_watch(),
            ring.request_refresh_and_watch(),
        );
        ring.answered();
        let started = std::time::Instant::now();
        first.answered_within(Duration::from_secs(5)).await;
        second.answered_within(Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        Ok(())
    }

    #[test]
    fn garbage_keeps_the_last_good_keys_and_a_good_set_replaces_them()
    -> Result<(), Box<dyn std::error::Error>> {
        let ring = RemoteKeyRing::new(JwksUrl::parse("http://127.0.0.1:1/jwks")?)?;
        let set = |kid: &str| {
            format!(
                r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"{kid}","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}]}}"#
            )
            .into_bytes()
        };
        assert!(!ring.ever_loaded());
        assert!(ring.install(b"<html>busy</html>".to_vec()).is_err());
        assert!(!ring.ever_loaded());
        assert_eq!(ring.install(set("a"))?, Some(1));
        assert!(ring.ever_loaded() && ring.get("a").is_some());
        let generation = ring.generation();
        assert_eq!(
            ring.install(set("a"))?,
            None,
            "the same set changes nothing"
        );
        assert_eq!(ring.generation(), generation);
        assert!(ring.install(br#"{"keys":[]}"#.to_vec()).is_err());
        assert!(ring.get("a").is_some(), "garbage keeps the old keys");
        assert_eq!(ring.install(set("b"))?, Some(1));
        assert!(ring.get("a").is_none(), "a removed kid is gone");
        assert!(ring.get("b").is_some());
        assert_ne!(ring.generation(), generation);
        Ok(())
    }
}
