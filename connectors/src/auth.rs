//! Credentials and access tokens.
//!
//! Credentials come from a file (a YAML or JSON map) or from environment variables, never from the config file
//! and never into a log: every secret is a [`Secret`], whose `Debug` and `Display` print `***`. Where the platform
//! uses OAuth refresh tokens (Google Ads, LinkedIn) an expired access token is exchanged for a new one at the
//! token endpoint; where it has none (Meta's long-lived tokens, TikTok's long-term tokens) the credentials are read
//! again, so a token rotated in the file or the environment is picked up, and an unchanged one is a clear error.

use std::collections::BTreeMap;

use crate::config::CredentialsConfig;
use crate::http::{Http, SourceError};

/// A secret value; shown as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, to put in a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// What a platform's credentials hold; each part optional, the sources say which they need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// A current access token.
    pub access_token: Option<Secret>,
    /// An OAuth refresh token.
    pub refresh_token: Option<Secret>,
    /// The OAuth client (app) id.
    pub client_id: Option<String>,
    /// The OAuth client (app) secret.
    pub client_secret: Option<Secret>,
    /// Google Ads developer token.
    pub developer_token: Option<Secret>,
}

impl Credentials {
    /// Reads the credentials `config` points at: the file if given, else `<PREFIX>_*` variables of `environment`.
    pub fn load(
        config: &CredentialsConfig,
        environment: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, SourceError> {
        let map: BTreeMap<String, String> = match (&config.file, &config.env_prefix) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    SourceError::Config(format!(
                        "cannot read the credentials file {}: {e}",
                        path.display()
                    ))
                })?;
                // The parser's message may quote the offending line, which may hold a secret: only say where.
                flat_string_map(&text).ok_or_else(|| {
                    SourceError::Config(format!(
                        "credentials file {}: expected a map of strings (access_token, refresh_token, client_id, client_secret, developer_token)",
                        path.display()
                    ))
                })?
            }
            (None, Some(prefix)) => [
                "access_token",
                "refresh_token",
                "client_id",
                "client_secret",
                "developer_token",
            ]
            .into_iter()
            .filter_map(|name| {
                let variable = format!("{prefix}_{}", name.to_uppercase());
                environment(&variable).map(|value| (name.to_owned(), value))
            })
            .collect(),
            (None, None) => {
                return Err(SourceError::Config(
                    "credentials: give `file` or `env_prefix`".into(),
                ))
            }
        };
        let secret = |name: &str| {
            map.get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(Secret::new)
        };
        Ok(Credentials {
            access_token: secret("access_token"),
            refresh_token: secret("refresh_token"),
            client_id: map.get("client_id").map(|v| v.trim().to_owned()),
            client_secret: secret("client_secret"),
            developer_token: secret("developer_token"),
        })
    }
}

/// A flat map of strings from JSON or from `key: value` lines (the YAML subset a credentials file needs; comments
/// and blank lines allowed).
fn flat_string_map(text: &str) -> Option<BTreeMap<String, String>> {
    if let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(text) {
        return Some(map);
    }
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(':')?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        map.insert(key.trim().to_owned(), value.to_owned());
    }
    Some(map)
}

/// How a platform renews an expired access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// OAuth 2 `grant_type=refresh_token` at this token endpoint (Google Ads, LinkedIn).
    RefreshToken {
        /// The token endpoint.
        token_url: String,
    },
    /// Read the credentials again (Meta, TikTok: long-lived tokens without refresh tokens).
    Reload,
}

/// The access token of one platform connector, renewed as the platform allows.
#[derive(Debug)]
pub struct Auth {
    config: CredentialsConfig,
    credentials: Credentials,
    renewal: Renewal,
    current: Option<Secret>,
}

impl Auth {
    /// Loads the credentials from `config` (and the process environment).
    pub fn load(config: &CredentialsConfig, renewal: Renewal) -> Result<Auth, SourceError> {
        let credentials = Credentials::load(config, |name| std::env::var(name).ok())?;
        let usable = match &renewal {
            Renewal::RefreshToken { .. } => {
                credentials.access_token.is_some()
                    || (credentials.refresh_token.is_some()
                        && credentials.client_id.is_some()
                        && credentials.client_secret.is_some())
            }
            Renewal::Reload => credentials.access_token.is_some(),
        };
        if !usable {
            return Err(SourceError::Config(match renewal {
                Renewal::RefreshToken { .. } => "credentials: need refresh_token, client_id and client_secret (or an access_token)".into(),
                Renewal::Reload => "credentials: need an access_token".into(),
            }));
        }
        Ok(Auth {
            config: config.clone(),
            current: credentials.access_token.clone(),
            credentials,
            renewal,
        })
    }

    /// The credentials as loaded (for the parts a source sends besides the token, e.g. a developer token).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The access token to send, fetched first if there is none yet.
    pub async fn access_token(&mut self, http: &Http) -> Result<Secret, SourceError> {
        if self.current.is_none() {
            self.renew(http).await?;
        }
        self.current
            .clone()
            .ok_or_else(|| SourceError::Config("no access token".into()))
    }

    /// Replaces the current (expired) access token.
    pub async fn renew(&mut self, http: &Http) -> Result<(), SourceError> {
        match &self.renewal {
            Renewal::RefreshToken { token_url } => {
                let token = self.refresh(http, token_url).await?;
                self.current = Some(token);
            }
            Renewal::Reload => {
                let reloaded = Credentials::load(&self.config, |name| std::env::var(name).ok())?;
                if reloaded.access_token.is_none() || reloaded.access_token == self.current {
                    return Err(SourceError::Auth {
                        what: "renewing the access token".into(),
                        reason: "the access token expired and the platform has no refresh token: put a new one in the credentials".into(),
                    });
                }
                self.current = reloaded.access_token.clone();
                self.credentials = reloaded;
            }
        }
        Ok(())
    }

    /// `grant_type=refresh_token` at `token_url` (RFC 6749 section 6).
    async fn refresh(&self, http: &Http, token_url: &str) -> Result<Secret, SourceError> {
        let failed = |reason: String| SourceError::Auth {
            what: "refreshing the access token".into(),
            reason,
        };
        let (Some(refresh), Some(client_id), Some(client_secret)) = (
            &self.credentials.refresh_token,
            &self.credentials.client_id,
            &self.credentials.client_secret,
        ) else {
            return Err(failed(
                "the access token expired and the credentials have no refresh_token, client_id and client_secret".into(),
            ));
        };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("client_id", client_id)
            .append_pair("client_secret", client_secret.expose())
            .append_pair("refresh_token", refresh.expose())
            .finish();
        let request = http
            .client()
            .post(token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        let received = http
            .receive(request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !received.status.is_success() {
            // The endpoint's error (`invalid_grant`, ...) never echoes the secrets sent.
            return Err(failed(format!(
                "token endpoint answered HTTP {}: {}",
                received.status,
                received.excerpt()
            )));
        }
        received
            .json()
            .and_then(|body| body.get("access_token")?.as_str().map(Secret::new))
            .ok_or_else(|| failed("token endpoint answer has no access_token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let credentials = Credentials {
            access_token: Some(Secret::new("ya29.very-secret")),
            refresh_token: Some(Secret::new("1//refresh-secret")),
            client_id: Some("client".into()),
            client_secret: Some(Secret::new("client-secret")),
            developer_token: Some(Secret::new("dev-secret")),
        };
        let shown = format!("{credentials:?} {}", Secret::new("x-secret"));
        assert!(!shown.contains("secret\""), "{shown}");
        for secret in [
            "very-secret",
            "refresh-secret",
            "client-secret",
            "dev-secret",
            "x-secret",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("client"));
    }

    #[test]
    fn credentials_come_from_a_file_or_prefixed_variables() {
        let dir = std::env::temp_dir().join(format!("adstream-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("google.yaml");
        std::fs::write(
            &file,
            "# rotated by the vault agent\nrefresh_token: \"r1\"\nclient_id: c\nclient_secret: s\n",
        )
        .expect("write");
        let from_file = Credentials::load(
            &CredentialsConfig {
                file: Some(file),
                env_prefix: None,
            },
            |_| None,
        )
        .expect("loads");
        assert_eq!(from_file.refresh_token, Some(Secret::new("r1")));
        assert_eq!(from_file.access_token, None);
        let from_env = Credentials::load(
            &CredentialsConfig {
                file: None,
                env_prefix: Some("META".into()),
            },
            |name| (name == "META_ACCESS_TOKEN").then(|| "t".to_owned()),
        )
        .expect("loads");
        assert_eq!(from_env.access_token, Some(Secret::new("t")));
        assert!(Credentials::load(&CredentialsConfig::default(), |_| None).is_err());
    }
}
