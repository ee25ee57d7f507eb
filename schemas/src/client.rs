//! A small client of the Confluent Schema Registry REST API, for adstream's own tools (`adstream schemas
//! register|check`). It works against adstream's registry, Confluent Schema Registry and Karapace alike.

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
    /// The registry answered with an error (Confluent's `error_code` and `message`).
    #[error("schema registry error {code} (HTTP {status}) for {url}: {message}")]
    Http {
        /// The request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Confluent error code, e.g. 40401; the HTTP status when the body had none.
        code: u32,
        /// The registry's message.
        message: String,
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

impl RegistryClientError {
    /// The Confluent error code of an [`RegistryClientError::Http`] error.
    pub fn code(&self) -> Option<u32> {
        match self {
            RegistryClientError::Http { code, .. } => Some(*code),
            _ => None,
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

/// A client of one registry.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: Url,
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
        let invalid = |reason: String| RegistryClientError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("expected an http:// or https:// URL".to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| invalid(error_chain(&e)))?;
        Ok(RegistryClient { http, base })
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
            return Err(RegistryClientError::Http {
                url: shown,
                status: status.as_u16(),
                code: code.unwrap_or(u32::from(status.as_u16())),
                message: message
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect()),
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
}
