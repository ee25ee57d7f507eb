//! A small client of the Confluent Schema Registry REST API, for adstream's own tools (`adstream schemas
//! register|check`). It works against adstream's registry, Confluent Schema Registry and Karapace alike, over HTTP or
//! HTTPS (rustls; the system's roots plus an optional CA bundle), with basic-auth or bearer credentials as managed
//! registries (Confluent Cloud's API key and secret) require. [`RegistrySettings`] holds them in the terms of
//! Confluent's clients: `basic.auth.user.info`, `bearer.auth.token`, `ssl.ca.location`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::json;

/// How long a request may take by default before the registry counts as unreachable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryClientError {
    /// The base URL is not a usable `http(s)://` URL.
    #[error("invalid schema registry URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it is unusable.
        reason: String,
    },
    /// No answer: connection refused, DNS failure, timeout.
    #[error("cannot reach the schema registry at {url}: {reason}")]
    Unreachable {
        /// The request URL.
        url: String,
        /// What the HTTP client saw.
        reason: String,
    },
    /// The registry (or a proxy in front of it) answered with an error status.
    #[error("schema registry error {} (HTTP {status}) for {url}: {message}", code.map_or_else(|| "without a Confluent error code".to_owned(), |c| c.to_string()))]
    Http {
        /// The request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Confluent error code, e.g. 40401, when the body was a Confluent error; None for any other body (a
        /// gateway's 502 page, an auth proxy's 401): such an answer says nothing about the schema asked for.
        code: Option<u32>,
        /// The registry's message, or the start of the body.
        message: String,
    },
    /// `basic.auth.user.info` is not `USER:PASSWORD`.
    #[error("invalid schema registry credentials: basic.auth.user.info must be USER:PASSWORD")]
    InvalidUserInfo,
    /// The CA bundle (`ssl.ca.location`) cannot be read or holds no PEM certificate.
    #[error("invalid schema registry CA bundle {}: {reason}", path.display())]
    InvalidCa {
        /// The bundle's path.
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
    /// The registry answered something that is not the API's JSON.
    #[error("unexpected answer from the schema registry for {url}: {reason}")]
    BadResponse {
        /// The request URL.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// What a failed registry request means for the caller, by meaning rather than by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The registry answered a Confluent "not found" code (40401 subject, 40402 version, 40403 schema id).
    NotFound,
    /// May succeed if asked again later: no answer, a timeout, a 5xx, 429 (rate limited), 408, or an answer that
    /// is not the API's (a proxy or load balancer speaking for a registry that is down).
    Retriable,
    /// The registry refused the client's credentials (401, 403): retrying does not help; the operator must fix the
    /// configuration.
    Unauthorized,
    /// Any other refusal (a 4xx with a Confluent code, or a misconfigured URL): retrying does not help.
    Refused,
}

impl RegistryClientError {
    /// The Confluent error code of an [`RegistryClientError::Http`] error whose body carried one.
    pub fn code(&self) -> Option<u32> {
        match self {
            RegistryClientError::Http { code, .. } => *code,
            _ => None,
        }
    }

    /// What the failure means: only a Confluent 404xx code says that something does not exist.
    pub fn kind(&self) -> FailureKind {
        match self {
            RegistryClientError::Http {
                code: Some(40401..=40403),
                ..
            } => FailureKind::NotFound,
            RegistryClientError::Http {
                status: 401 | 403, ..
            } => FailureKind::Unauthorized,
            RegistryClientError::Http { status, .. }
                if *status >= 500 || *status == 429 || *status == 408 =>
            {
                FailureKind::Retriable
            }
            RegistryClientError::Http { .. }
            | RegistryClientError::InvalidUrl { .. }
            | RegistryClientError::InvalidUserInfo
            | RegistryClientError::InvalidCa { .. } => FailureKind::Refused,
            RegistryClientError::Unreachable { .. } | RegistryClientError::BadResponse { .. } => {
                FailureKind::Retriable
            }
        }
    }
}

/// A schema version as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegisteredSchema {
    /// The subject.
    pub subject: String,
    /// The global schema id.
    pub id: u32,
    /// The version within the subject.
    pub version: i32,
    /// The schema text.
    pub schema: String,
}

/// The verdict of a compatibility check.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CompatibilityResult {
    /// Whether the schema may be registered under the subject's level.
    pub is_compatible: bool,
    /// Why not (with `verbose`); empty when compatible.
    #[serde(default)]
    pub messages: Vec<String>,
}

/// How a client proves who it is to the registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No credentials (or those in the URL's user info, Confluent's `basic.auth.credentials.source=URL`).
    #[default]
    None,
    /// HTTP basic auth (Confluent's `basic.auth.user.info`; on Confluent Cloud the API key and secret).
    Basic {
        /// User name or API key.
        user: String,
        /// Password or API secret.
        password: String,
    },
    /// A bearer token (Confluent's `bearer.auth.token`).
    Bearer(String),
}

impl RegistryAuth {
    /// Basic auth from Confluent's `basic.auth.user.info` form `USER:PASSWORD` (the password may contain `:`).
    pub fn from_user_info(user_info: &str) -> Result<RegistryAuth, RegistryClientError> {
        match user_info.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(RegistryAuth::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            }),
            _ => Err(RegistryClientError::InvalidUserInfo),
        }
    }
}

// Written out so that a logged config never shows a secret.
impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::None => f.write_str("None"),
            RegistryAuth::Basic { user, .. } => {
                write!(f, "Basic {{ user: {user:?}, password: *** }}")
            }
            RegistryAuth::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

/// Where a registry is and how to reach it: everything a [`RegistryClient`] needs besides its timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Base URL, `http://` or `https://`. User info in it (`https://KEY:SECRET@host`) is taken as basic auth when
    /// [`RegistrySettings::auth`] is [`RegistryAuth::None`], and never shown in errors.
    pub url: String,
    /// Credentials sent with every request.
    pub auth: RegistryAuth,
    /// PEM file of CA certificates trusted besides the system's roots (Confluent's
    /// `schema.registry.ssl.ca.location`), for a registry whose certificate a private CA signed.
    pub ca_location: Option<PathBuf>,
}

impl RegistrySettings {
    /// The URL for messages and logs: without user info, so that credentials given in it are never shown.
    pub fn shown_url(&self) -> String {
        match Url::parse(&self.url) {
            Ok(mut url) => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.to_string()
            }
            Err(_) => self.url.clone(),
        }
    }
}

impl From<&str> for RegistrySettings {
    fn from(url: &str) -> RegistrySettings {
        RegistrySettings {
            url: url.to_owned(),
            ..RegistrySettings::default()
        }
    }
}

impl From<&String> for RegistrySettings {
    fn from(url: &String) -> RegistrySettings {
        RegistrySettings::from(url.as_str())
    }
}

impl From<String> for RegistrySettings {
    fn from(url: String) -> RegistrySettings {
        RegistrySettings {
            url,
            ..RegistrySettings::default()
        }
    }
}

/// A client of one registry.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    /// The base URL without user info.
    base: Url,
    auth: RegistryAuth,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error_code: Option<u32>,
    message: Option<String>,
}

impl RegistryClient {
    /// A client of the registry at `base_url` (e.g. `http://127.0.0.1:8081`) with the [`DEFAULT_TIMEOUT`].
    pub fn new(base_url: &str) -> Result<RegistryClient, RegistryClientError> {
        RegistryClient::with_timeout(base_url, DEFAULT_TIMEOUT)
    }

    /// A client whose requests fail after `timeout`.
    pub fn with_timeout(
        base_url: &str,
        timeout: Duration,
    ) -> Result<RegistryClient, RegistryClientError> {
        RegistryClient::connect(&RegistrySettings::from(base_url), timeout)
    }

    /// A client of the registry `settings` describe, with its credentials and CA bundle; requests fail after
    /// `timeout`.
    pub fn connect(
        settings: &RegistrySettings,
        timeout: Duration,
    ) -> Result<RegistryClient, RegistryClientError> {
        let base_url = settings.url.as_str();
        let invalid = |reason: String| RegistryClientError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let mut base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("expected an http:// or https:// URL".to_owned()));
        }
        let mut auth = settings.auth.clone();
        if !base.username().is_empty() {
            if auth == RegistryAuth::None {
                auth = RegistryAuth::Basic {
                    user: percent_decoded(base.username()),
                    password: percent_decoded(base.password().unwrap_or_default()),
                };
            }
            // Stripped so that no error message or log line carries the secret; an http(s) base URL always
            // accepts this.
            let _ = base.set_username("");
            let _ = base.set_password(None);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout);
        if let Some(path) = &settings.ca_location {
            builder = builder.tls_certs_merge(ca_bundle(path)?);
        }
        let http = builder.build().map_err(|e| invalid(error_chain(&e)))?;
        Ok(RegistryClient { http, base, auth })
    }

    /// The registry's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// Registers `schema_json` (Avro) under `subject`; returns its id. An identical schema returns its existing id.
    pub async fn register(
        &self,
        subject: &str,
        schema_json: &str,
    ) -> Result<u32, RegistryClientError> {
        let url = self.url(&["subjects", subject, "versions"], &[]);
        let answer: IdAnswer = self
            .call(Method::POST, url, Some(json!({ "schema": schema_json })))
            .await?;
        Ok(answer.id)
    }

    /// The (id, version) under which `schema_json` is registered in `subject`, if it is.
    pub async fn lookup(
        &self,
        subject: &str,
        schema_json: &str,
    ) -> Result<Option<(u32, i32)>, RegistryClientError> {
        let url = self.url(&["subjects", subject], &[]);
        match self
            .call::<RegisteredSchema>(Method::POST, url, Some(json!({ "schema": schema_json })))
            .await
        {
            Ok(found) => Ok(Some((found.id, found.version))),
            Err(e) if matches!(e.code(), Some(40401 | 40403)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The schema text registered under global `id`; None when no schema has that id (40403).
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<String>, RegistryClientError> {
        #[derive(Deserialize)]
        struct SchemaAnswer {
            schema: String,
        }
        let url = self.url(&["schemas", "ids", &id.to_string()], &[]);
        match self.call::<SchemaAnswer>(Method::GET, url, None).await {
            Ok(found) => Ok(Some(found.schema)),
            Err(e) if matches!(e.code(), Some(40403)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The newest live version of `subject`, if it has one.
    pub async fn latest(
        &self,
        subject: &str,
    ) -> Result<Option<RegisteredSchema>, RegistryClientError> {
        let url = self.url(&["subjects", subject, "versions", "latest"], &[]);
        match self.call::<RegisteredSchema>(Method::GET, url, None).await {
            Ok(found) => Ok(Some(found)),
            Err(e) if matches!(e.code(), Some(40401 | 40402)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `schema_json` could be registered under `subject`: checked against every version the subject's
    /// level requires (the newest, or all for transitive levels). A subject that does not exist accepts anything.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        schema_json: &str,
        verbose: bool,
    ) -> Result<CompatibilityResult, RegistryClientError> {
        let verbose = if verbose { "true" } else { "false" };
        let url = self.url(
            &["compatibility", "subjects", subject, "versions"],
            &[("verbose", verbose)],
        );
        match self
            .call::<CompatibilityResult>(Method::POST, url, Some(json!({ "schema": schema_json })))
            .await
        {
            Ok(result) => Ok(result),
            Err(e) if e.code() == Some(40401) => Ok(CompatibilityResult {
                is_compatible: true,
                messages: Vec::new(),
            }),
            Err(e) => Err(e),
        }
    }

    /// The compatibility level that applies to `subject` (its own, else the global one).
    pub async fn config(&self, subject: &str) -> Result<String, RegistryClientError> {
        #[derive(Deserialize)]
        struct Level {
            #[serde(rename = "compatibilityLevel")]
            level: String,
        }
        let url = self.url(&["config", subject], &[("defaultToGlobal", "true")]);
        match self.call::<Level>(Method::GET, url, None).await {
            Ok(answer) => Ok(answer.level),
            // Registries that predate `defaultToGlobal` answer 40408 (or 40401) for a subject without its own level.
            Err(e) if matches!(e.code(), Some(40408 | 40401)) => {
                let answer: Level = self
                    .call(Method::GET, self.url(&["config"], &[]), None)
                    .await?;
                Ok(answer.level)
            }
            Err(e) => Err(e),
        }
    }

    /// Sets the compatibility level of `subject`, or the global one with `None`; returns the level now set.
    pub async fn set_config(
        &self,
        subject: Option<&str>,
        level: &str,
    ) -> Result<String, RegistryClientError> {
        #[derive(Deserialize)]
        struct Level {
            compatibility: String,
        }
        let url = match subject {
            Some(subject) => self.url(&["config", subject], &[]),
            None => self.url(&["config"], &[]),
        };
        let answer: Level = self
            .call(Method::PUT, url, Some(json!({ "compatibility": level })))
            .await?;
        Ok(answer.compatibility)
    }

    /// The base URL plus path segments, each percent-encoded (a subject `a/b` becomes `a%2Fb`), plus a query.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        // `cannot_be_a_base` was ruled out in the constructor, so the path is always editable.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
    ) -> Result<T, RegistryClientError> {
        let shown = url.to_string();
        let mut request = self.http.request(method, url).header(
            reqwest::header::ACCEPT,
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        request = match &self.auth {
            RegistryAuth::None => request,
            RegistryAuth::Basic { user, password } => request.basic_auth(user, Some(password)),
            RegistryAuth::Bearer(token) => request.bearer_auth(token),
        };
        if let Some(body) = body {
            request = request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/vnd.schemaregistry.v1+json",
                )
                .body(body.to_string());
        }
        let unreachable = |e: reqwest::Error| RegistryClientError::Unreachable {
            url: shown.clone(),
            reason: error_chain(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let answer: Option<ErrorAnswer> = serde_json::from_slice(&bytes).ok();
            let (code, message) = match answer {
                Some(ErrorAnswer {
                    error_code,
                    message,
                }) => (error_code, message),
                None => (None, None),
            };
            // A proxy's HTML page spans lines: its words on one line keep the error a one-liner.
            let message = message.unwrap_or_else(|| {
                let body: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
                body.split_whitespace().collect::<Vec<_>>().join(" ")
            });
            // A proxy's or gateway's 401/403 page says little; name the settings that fix it.
            let message = match (status.as_u16(), &self.auth) {
                (401 | 403, RegistryAuth::None) => format!(
                    "the registry wants credentials (basic.auth.user.info or bearer.auth.token): {message}"
                ),
                (401 | 403, _) => format!("the registry refused the credentials: {message}"),
                _ => message,
            };
            return Err(RegistryClientError::Http {
                url: shown,
                status: status.as_u16(),
                code,
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| RegistryClientError::BadResponse {
            url: shown,
            reason: format!(
                "{e}; body: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        })
    }
}

/// The certificates of the PEM file at `path`.
fn ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, RegistryClientError> {
    let invalid = |reason: String| RegistryClientError::InvalidCa {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| invalid(error_chain(&e)))?;
    if certificates.is_empty() {
        return Err(invalid("no PEM certificate in the file".to_owned()));
    }
    Ok(certificates)
}

/// A URL's user-info part with its percent-escapes (`%40` for `@` in an API secret) undone.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An error and its causes on one line (reqwest's own message omits the cause, e.g. "connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_percent_encoded_in_paths() {
        let client = RegistryClient::new("http://127.0.0.1:8081/prefix/").unwrap();
        let url = client.url(&["subjects", "a/b c", "versions"], &[("verbose", "true")]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8081/prefix/subjects/a%2Fb%20c/versions?verbose=true"
        );
    }

    #[test]
    fn user_info_in_the_url_becomes_basic_auth_and_leaves_the_url() {
        let client = RegistryClient::new("https://key:se%40cret@registry.example:8081/").unwrap();
        assert_eq!(client.base_url(), "https://registry.example:8081/");
        assert_eq!(
            client.auth,
            RegistryAuth::Basic {
                user: "key".into(),
                password: "se@cret".into()
            }
        );
        assert!(!format!("{client:?}").contains("se@cret"));
    }

    #[test]
    fn user_info_must_be_user_colon_password() {
        assert_eq!(
            RegistryAuth::from_user_info("key:a:b").unwrap(),
            RegistryAuth::Basic {
                user: "key".into(),
                password: "a:b".into()
            }
        );
        for bad in ["nocolon", ":secret", ""] {
            assert!(
                matches!(
                    RegistryAuth::from_user_info(bad),
                    Err(RegistryClientError::InvalidUserInfo)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_missing_ca_bundle_is_named() {
        let settings = RegistrySettings {
            ca_location: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..RegistrySettings::from("https://127.0.0.1:1")
        };
        let error = RegistryClient::connect(&settings, DEFAULT_TIMEOUT).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn bad_urls_are_refused_with_the_url() {
        let error = RegistryClient::new("localhost:8081")
            .unwrap_err()
            .to_string();
        assert!(error.contains("localhost:8081"), "{error}");
        assert!(RegistryClient::new("not a url").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_registry_names_the_url() {
        // Port 1 on loopback refuses connections at once.
        let client =
            RegistryClient::with_timeout("http://127.0.0.1:1", Duration::from_secs(2)).unwrap();
        let error = client.latest("s").await.unwrap_err();
        assert!(
            matches!(error, RegistryClientError::Unreachable { .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("http://127.0.0.1:1/subjects/s/versions/latest"),
            "{error}"
        );
    }

    /// Answers every request on a loopback port with `status` and `body`, the way a gateway in front of a registry
    /// that is down (or an auth proxy) does.
    async fn answering(status: &'static str, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{address}")
    }

    // Regression (issue 18, item 5): a gateway's 502/503, a rate limit or an auth proxy's 401 used to become
    // error "code" 502/401 < 50000, which the decoder read as "unknown schema id" and dead-lettered valid records.
    #[tokio::test]
    async fn only_a_confluent_not_found_code_means_the_schema_id_does_not_exist() {
        let cases = [
            (
                "502 Bad Gateway",
                "<html>bad gateway</html>",
                FailureKind::Retriable,
            ),
            ("503 Service Unavailable", "down", FailureKind::Retriable),
            ("429 Too Many Requests", "slow down", FailureKind::Retriable),
            ("401 Unauthorized", "who are you", FailureKind::Unauthorized),
            ("403 Forbidden", "{}", FailureKind::Unauthorized),
            (
                "404 Not Found",
                "<html>no such path</html>",
                FailureKind::Refused,
            ),
        ];
        for (status, body, expected) in cases {
            let client = RegistryClient::new(&answering(status, body).await).unwrap();
            let error = client.schema_by_id(7).await.expect_err(status);
            assert_eq!(error.kind(), expected, "{status}: {error}");
            assert_eq!(error.code(), None, "{status}");
        }
        let not_found = answering(
            "404 Not Found",
            r#"{"error_code":40403,"message":"Schema 7 not found"}"#,
        )
        .await;
        let client = RegistryClient::new(&not_found).unwrap();
        assert_eq!(client.schema_by_id(7).await.unwrap(), None);
        let unreachable =
            RegistryClient::with_timeout("http://127.0.0.1:1", Duration::from_secs(2)).unwrap();
        let error = unreachable.schema_by_id(7).await.unwrap_err();
        assert_eq!(error.kind(), FailureKind::Retriable);
    }
}
