//! The HTTP client every source shares, and the errors of a source.
//!
//! A request goes through [`Http::call`]: the platform's `judge` reads each answer (status, headers, body) and says
//! whether it is data, a throttle or transient failure to retry, an expired token, or a fatal refusal. Retries back
//! off exponentially with jitter and never earlier than the platform asked (`Retry-After`, usage headers); an
//! expired token is renewed once per request. Bodies are read up to a bound, so a misbehaving server cannot make
//! the connector hold gigabytes.

use std::time::Duration;

use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use crate::auth::{Auth, Secret};
use crate::config::HttpConfig;

/// Why fetching from a platform failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The connector's configuration or credentials are unusable.
    #[error("{0}")]
    Config(String),
    /// The platform kept throttling or failing transiently past the retry budget.
    #[error("{what}: still failing after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// The request.
        what: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The platform asked to wait longer than `http.max_wait_secs`.
    #[error("{what}: the platform asks to wait {}s, more than http.max_wait_secs", wait.as_secs())]
    WaitTooLong {
        /// The request.
        what: String,
        /// The wait asked for.
        wait: Duration,
    },
    /// The token stayed expired or invalid after renewing it, or could not be renewed.
    #[error("{what}: authentication failed: {reason}")]
    Auth {
        /// The request.
        what: String,
        /// What the platform or the token endpoint said.
        reason: String,
    },
    /// The platform refused the request for a reason retrying does not fix (bad parameters, permissions).
    #[error("{what}: refused: {reason}")]
    Refused {
        /// The request.
        what: String,
        /// Status and the platform's message.
        reason: String,
    },
    /// The answer is not in the documented shape.
    #[error("{what}: unexpected response: {reason}")]
    Shape {
        /// The request.
        what: String,
        /// What did not match.
        reason: String,
    },
}

impl SourceError {
    /// Whether a later attempt (the next poll) may succeed without anyone changing anything: throttling and
    /// outages pass, refusals and bad credentials do not.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            SourceError::RetriesExhausted { .. } | SourceError::WaitTooLong { .. }
        )
    }
}

/// Why no answer was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReceived {
    /// The connection failed or timed out (the URL left out of the message).
    #[error("{0}")]
    Transport(String),
    /// The body exceeded `http.max_body_bytes`.
    #[error("response body larger than http.max_body_bytes ({0} bytes)")]
    TooLarge(usize),
}

/// An answer, its body read (up to the bound).
#[derive(Debug)]
pub struct Received {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// The body as JSON, or None.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The first 300 characters of the body, for messages.
    pub fn excerpt(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(300)
            .collect()
    }
}

/// What a platform's answer means.
#[derive(Debug)]
pub enum Judged {
    /// Data; `pause` asks the next request to wait (a usage header near its limit).
    Data {
        /// The parsed body.
        body: Value,
        /// Wait this long before the next request.
        pause: Option<Duration>,
    },
    /// Throttled or a transient failure: try again, not before `after` if given.
    Retry {
        /// The platform's own wait, if it gave one.
        after: Option<Duration>,
        /// What happened, for the log.
        reason: String,
    },
    /// The access token expired or is invalid: renew it and try again.
    Expired(String),
    /// Refused for good.
    Fatal(String),
}

/// The common reading of an answer: 429 and 5xx are retried (with `Retry-After` when present), 401 is an expired
/// token, any other non-2xx is fatal, a 2xx must be JSON. Platforms check their own error bodies first.
pub fn judge_status(received: &Received) -> Judged {
    let status = received.status;
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Judged::Retry {
            after: retry_after(&received.headers),
            reason: format!("HTTP {status}: {}", received.excerpt()),
        };
    }
    if status == StatusCode::UNAUTHORIZED {
        return Judged::Expired(format!("HTTP {status}: {}", received.excerpt()));
    }
    if !status.is_success() {
        return Judged::Fatal(format!("HTTP {status}: {}", received.excerpt()));
    }
    match received.json() {
        Some(body) => Judged::Data { body, pause: None },
        None => Judged::Fatal(format!(
            "HTTP {status} with a body that is not JSON: {}",
            received.excerpt()
        )),
    }
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = at.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

/// The HTTP client with its limits.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    config: HttpConfig,
}

impl Http {
    /// A client with the timeouts of `config`.
    pub fn new(config: &HttpConfig) -> Result<Http, SourceError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout())
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .user_agent(concat!("adstream-connectors/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Http {
            client,
            config: config.clone(),
        })
    }

    /// The underlying client, to build requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `request` and reads the answer's body up to `http.max_body_bytes`.
    pub async fn receive(&self, request: RequestBuilder) -> Result<Received, NotReceived> {
        // Transport errors are shown without the URL: some platforms (Meta) carry the token in the query string.
        let mut response = request
            .send()
            .await
            .map_err(|e| NotReceived::Transport(transport_error(&e.without_url())))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| NotReceived::Transport(transport_error(&e.without_url())))?
        {
            if body.len() + chunk.len() > self.config.max_body_bytes {
                return Err(NotReceived::TooLarge(self.config.max_body_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Received {
            status,
            headers,
            body,
        })
    }

    /// One request with retries: `build` makes the request with the current access token, `judge` reads the
    /// answer. Renews the token once when `judge` says it expired.
    pub async fn call(
        &self,
        what: &str,
        auth: &mut Auth,
        build: impl Fn(&Secret) -> RequestBuilder,
        judge: impl Fn(&Received) -> Judged,
    ) -> Result<Value, SourceError> {
        let mut attempt = 0u32;
        let mut renewed = false;
        loop {
            let token = auth.access_token(self).await?;
            let outcome = match self.receive(build(&token)).await {
                Ok(received) => judge(&received),
                // Timeouts, resets, refused connections: transient from here.
                Err(NotReceived::Transport(reason)) => Judged::Retry {
                    after: None,
                    reason,
                },
                // The same request would bring the same body: not worth retrying.
                Err(too_large) => Judged::Fatal(too_large.to_string()),
            };
            match outcome {
                Judged::Data { body, pause } => {
                    if let Some(pause) = pause {
                        tracing::info!(
                            what,
                            pause_ms = pause.as_millis() as u64,
                            "usage near the platform's limit, pausing"
                        );
                        tokio::time::sleep(self.bounded_wait(what, pause)?).await;
                    }
                    return Ok(body);
                }
                Judged::Retry { after, reason } => {
                    attempt += 1;
                    if attempt > self.config.max_retries {
                        return Err(SourceError::RetriesExhausted {
                            what: what.to_owned(),
                            attempts: attempt,
                            last: reason,
                        });
                    }
                    let wait = self.backoff(attempt).max(after.unwrap_or_default());
                    let wait = self.bounded_wait(what, wait)?;
                    tracing::warn!(what, attempt, wait_ms = wait.as_millis() as u64, %reason, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Judged::Expired(reason) if !renewed => {
                    tracing::info!(what, %reason, "access token expired, renewing it");
                    auth.renew(self).await?;
                    renewed = true;
                }
                Judged::Expired(reason) => {
                    return Err(SourceError::Auth {
                        what: what.to_owned(),
                        reason: format!("still refused after renewing the token: {reason}"),
                    })
                }
                Judged::Fatal(reason) => {
                    return Err(SourceError::Refused {
                        what: what.to_owned(),
                        reason,
                    })
                }
            }
        }
    }

    /// The backoff before retry `attempt` (1-based): the initial backoff doubled per attempt, capped, with "equal
    /// jitter" (half fixed, half random) so that connectors throttled together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = Duration::from_millis(self.config.initial_backoff_ms)
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(Duration::from_secs(self.config.max_backoff_secs));
        let half = base / 2;
        half + half.mul_f64(rand::thread_rng().gen::<f64>())
    }

    fn bounded_wait(&self, what: &str, wait: Duration) -> Result<Duration, SourceError> {
        if wait > Duration::from_secs(self.config.max_wait_secs) {
            return Err(SourceError::WaitTooLong {
                what: what.to_owned(),
                wait,
            });
        }
        Ok(wait)
    }
}

/// `endpoint` with `pairs` appended as its query string (form-encoded).
pub fn url_with_query(
    endpoint: &str,
    pairs: &[(&str, String)],
) -> Result<reqwest::Url, SourceError> {
    let mut url = reqwest::Url::parse(endpoint)
        .map_err(|e| SourceError::Config(format!("base_url: '{endpoint}' is not a URL: {e}")))?;
    url.query_pairs_mut()
        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
    Ok(url)
}

/// A transport error with its causes, on one line.
fn transport_error(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert("retry-after", "soon".parse().expect("header"));
        assert_eq!(retry_after(&headers), None);
    }

    /// Serves `answers` (raw HTTP responses) to successive connections on loopback; returns the URL and a counter
    /// of the connections served.
    async fn raw_server(
        answers: Vec<String>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = served.clone();
        tokio::spawn(async move {
            for answer in answers.into_iter().cycle() {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (url, served)
    }

    fn auth() -> Auth {
        let path = std::env::temp_dir().join(format!("adstream-http-test-{}", std::process::id()));
        std::fs::write(&path, "access_token: t\n").expect("credentials");
        Auth::load(
            &crate::config::CredentialsConfig {
                file: Some(path),
                env_prefix: None,
            },
            crate::auth::Renewal::Reload,
        )
        .expect("auth")
    }

    fn http(max_body_bytes: usize) -> Http {
        Http::new(&HttpConfig {
            max_body_bytes,
            max_retries: 3,
            initial_backoff_ms: 1,
            ..HttpConfig::default()
        })
        .expect("client")
    }

    #[tokio::test]
    async fn a_body_over_the_bound_fails_without_retrying() {
        let body = "x".repeat(2000);
        let (url, served) = raw_server(vec![format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )])
        .await;
        let http = http(1000);
        let client = http.client().clone();
        let outcome = http
            .call("big", &mut auth(), |_| client.get(&url), judge_status)
            .await;
        assert!(
            matches!(&outcome, Err(SourceError::Refused { reason, .. }) if reason.contains("max_body_bytes")),
            "{outcome:?}"
        );
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_an_answer() {
        let (url, served) = raw_server(vec![
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .into(),
            "HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\n{\"a\": 1}".into(),
        ])
        .await;
        let http = http(1000);
        let client = http.client().clone();
        let body = http
            .call("flaky", &mut auth(), |_| client.get(&url), judge_status)
            .await
            .expect("answered after one retry");
        assert_eq!(body["a"], 1);
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn backoff_doubles_within_its_jitter_and_is_capped() {
        let http = Http::new(&HttpConfig {
            initial_backoff_ms: 1000,
            max_backoff_secs: 5,
            ..HttpConfig::default()
        })
        .expect("client");
        for (attempt, full) in [(1, 1000), (2, 2000), (3, 4000), (4, 5000), (30, 5000)] {
            let wait = http.backoff(attempt).as_millis() as u64;
            assert!(
                (full / 2..=full).contains(&wait),
                "attempt {attempt}: {wait} ms"
            );
        }
    }
}
