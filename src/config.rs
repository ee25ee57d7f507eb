//! Connection settings shared by every subcommand.
//!
//! Precedence, highest first: command-line flag, environment variable (`ADSTREAM_*`), the YAML config file given
//! with `--config`, built-in default. Any librdkafka property (SASL, TLS, timeouts…) passes through unchanged, from
//! the config file's `kafka:` map, from `ADSTREAM_KAFKA_*` environment variables (`ADSTREAM_KAFKA_SASL_PASSWORD` is
//! `sasl.password`: lower case, `_` for `.`, the way Confluent's images map environment to client properties; for
//! secrets mounted from a Kubernetes Secret) or from repeated `-X key=value` flags, in that rising precedence.
//! The registry's credentials and CA bundle take Confluent's client property names in the file's `registry:` map.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use adstream_kafka::registry_client::{RegistryAuth, RegistrySettings};
use anyhow::{bail, Context, Result};
use rdkafka::ClientConfig;
use serde::Deserialize;

/// Default bootstrap servers: the local broker started by `dev/kafka up`.
pub const DEFAULT_BOOTSTRAP_SERVERS: &str = "127.0.0.1:9092";
/// Default schema registry: the one started by `adstream registry serve`.
pub const DEFAULT_REGISTRY_URL: &str = "http://127.0.0.1:8081";

/// The optional YAML config file (`--config`). Unknown fields are rejected so that a typo is named, not ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Kafka bootstrap servers, comma separated.
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// Base URL of the Confluent-compatible schema registry.
    #[serde(default)]
    pub registry_url: Option<String>,
    /// librdkafka properties passed to every Kafka client as they are (e.g. `security.protocol: SASL_SSL`).
    #[serde(default)]
    pub kafka: BTreeMap<String, String>,
    /// Schema registry client properties, named as Confluent's clients name them.
    #[serde(default)]
    pub registry: RegistryFileConfig,
    /// The platform connectors (`adstream connect run`); other commands ignore it.
    #[serde(default)]
    pub connectors: Option<adstream_connectors::config::ConnectorsConfig>,
}

/// The config file's `registry:` map.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFileConfig {
    /// `USER:PASSWORD` for HTTP basic auth (on Confluent Cloud `API_KEY:API_SECRET`).
    #[serde(default, rename = "basic.auth.user.info")]
    pub basic_auth_user_info: Option<String>,
    /// A bearer token sent instead of basic auth.
    #[serde(default, rename = "bearer.auth.token")]
    pub bearer_auth_token: Option<String>,
    /// PEM file of CA certificates trusted besides the system's roots.
    #[serde(default, rename = "ssl.ca.location")]
    pub ssl_ca_location: Option<PathBuf>,
}

/// Registry client settings from flags or environment (already merged by clap); each beats the config file's.
#[derive(Debug, Default)]
pub struct RegistryFlags {
    /// `--registry-basic-auth-user-info` / `ADSTREAM_REGISTRY_BASIC_AUTH_USER_INFO`.
    pub basic_auth_user_info: Option<String>,
    /// `--registry-bearer-auth-token` / `ADSTREAM_REGISTRY_BEARER_AUTH_TOKEN`.
    pub bearer_auth_token: Option<String>,
    /// `--registry-ca-location` / `ADSTREAM_REGISTRY_SSL_CA_LOCATION`.
    pub ca_location: Option<PathBuf>,
}

/// Prefix of environment variables that carry librdkafka properties.
const KAFKA_ENV_PREFIX: &str = "ADSTREAM_KAFKA_";

impl FileConfig {
    /// Reads and parses the config file; errors name the file and the offending field or line.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        serde_yaml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))
    }
}

/// Resolved connection settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Kafka bootstrap servers.
    pub bootstrap_servers: String,
    /// The schema registry: URL, credentials, CA bundle.
    pub registry: RegistrySettings,
    /// Extra librdkafka properties, applied after the defaults so users can override anything.
    pub kafka_properties: BTreeMap<String, String>,
}

impl Settings {
    /// Merges flags/env (already merged by clap), `ADSTREAM_KAFKA_*` variables of `environment`, the config file
    /// and defaults.
    pub fn resolve(
        bootstrap_flag: Option<String>,
        registry_flag: Option<String>,
        registry_flags: RegistryFlags,
        config_path: Option<&Path>,
        overrides: &[String],
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let file = match config_path {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let mut kafka_properties = file.kafka;
        for (name, value) in environment {
            if let Some(property) = name.strip_prefix(KAFKA_ENV_PREFIX) {
                if !property.is_empty() {
                    kafka_properties.insert(property.to_lowercase().replace('_', "."), value);
                }
            }
        }
        for pair in overrides {
            let Some((key, value)) = pair.split_once('=') else {
                bail!("invalid -X '{pair}': expected key=value (a librdkafka property)");
            };
            kafka_properties.insert(key.trim().to_string(), value.trim().to_string());
        }
        Ok(Self {
            bootstrap_servers: bootstrap_flag
                .or(file.bootstrap_servers)
                .unwrap_or_else(|| DEFAULT_BOOTSTRAP_SERVERS.to_string()),
            registry: registry_settings(
                registry_flag
                    .or(file.registry_url)
                    .unwrap_or_else(|| DEFAULT_REGISTRY_URL.to_string()),
                registry_flags,
                file.registry,
            )?,
            kafka_properties,
        })
    }

    /// A librdkafka client config with the bootstrap servers, bounded timeouts (so an unreachable broker is
    /// reported within seconds rather than retried forever) and every pass-through property.
    pub fn kafka_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("socket.connection.setup.timeout.ms", "5000")
            .set("client.id", "adstream");
        for (key, value) in &self.kafka_properties {
            config.set(key, value);
        }
        config
    }
}

/// The registry settings: a flag or variable beats the file; basic auth and a bearer token exclude each other.
fn registry_settings(
    url: String,
    flags: RegistryFlags,
    file: RegistryFileConfig,
) -> Result<RegistrySettings> {
    let user_info = flags.basic_auth_user_info.or(file.basic_auth_user_info);
    let token = flags.bearer_auth_token.or(file.bearer_auth_token);
    let auth = match (user_info, token) {
        (Some(_), Some(_)) => {
            bail!("registry credentials: give basic.auth.user.info or bearer.auth.token, not both")
        }
        (Some(user_info), None) => RegistryAuth::from_user_info(&user_info)?,
        (None, Some(token)) => RegistryAuth::Bearer(token),
        (None, None) => RegistryAuth::None,
    };
    Ok(RegistrySettings {
        url,
        auth,
        ca_location: flags.ca_location.or(file.ssl_ca_location),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolves with no registry flags.
    fn resolve(
        bootstrap: Option<String>,
        path: Option<&Path>,
        overrides: &[String],
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings> {
        Settings::resolve(
            bootstrap,
            None,
            RegistryFlags::default(),
            path,
            overrides,
            environment,
        )
    }

    #[test]
    fn kafka_environment_variables_become_properties_below_flags() {
        let environment = [
            (
                "ADSTREAM_KAFKA_SASL_PASSWORD".to_owned(),
                "s3cret".to_owned(),
            ),
            ("ADSTREAM_KAFKA_LINGER_MS".to_owned(), "5".to_owned()),
            ("ADSTREAM_KAFKA_".to_owned(), "ignored".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let s = resolve(None, None, &["linger.ms=9".into()], environment).unwrap();
        let config = s.kafka_config();
        assert_eq!(config.get("sasl.password"), Some("s3cret"));
        assert_eq!(
            config.get("linger.ms"),
            Some("9"),
            "-X beats the environment"
        );
        assert_eq!(
            s.kafka_properties.len(),
            2,
            "{:?}",
            s.kafka_properties.keys()
        );
    }

    #[test]
    fn registry_credentials_from_file_and_flags() {
        let dir = std::env::temp_dir().join(format!("adstream-config-reg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.yaml");
        std::fs::write(
            &path,
            "registry_url: https://key@sr.example\nregistry:\n  basic.auth.user.info: key:file\n  ssl.ca.location: /ca.pem\n",
        )
        .unwrap();
        let s = resolve(None, Some(&path), &[], []).unwrap();
        assert_eq!(
            s.registry.auth,
            RegistryAuth::Basic {
                user: "key".into(),
                password: "file".into()
            }
        );
        assert_eq!(s.registry.ca_location, Some(PathBuf::from("/ca.pem")));
        assert_eq!(s.registry.shown_url(), "https://sr.example/");
        let flags = RegistryFlags {
            bearer_auth_token: Some("t".into()),
            ..RegistryFlags::default()
        };
        let both = Settings::resolve(None, None, flags, Some(&path), &[], []).unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        let flags = RegistryFlags {
            basic_auth_user_info: Some("key:flag".into()),
            ..RegistryFlags::default()
        };
        let s = Settings::resolve(None, None, flags, Some(&path), &[], []).unwrap();
        assert_eq!(
            s.registry.auth,
            RegistryAuth::Basic {
                user: "key".into(),
                password: "flag".into()
            }
        );
        std::fs::write(&path, "registry:\n  basic.auth.userinfo: a:b\n").unwrap();
        let typo = format!("{:#}", resolve(None, Some(&path), &[], []).unwrap_err());
        assert!(typo.contains("basic.auth.userinfo"), "{typo}");
    }

    #[test]
    fn flag_beats_file_and_file_beats_default() {
        let dir = std::env::temp_dir().join(format!("adstream-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.yaml");
        std::fs::write(
            &path,
            "bootstrap_servers: file:9092\nkafka:\n  security.protocol: SASL_SSL\n",
        )
        .unwrap();
        let s = resolve(None, Some(&path), &["linger.ms=7".into()], []).unwrap();
        assert_eq!(s.bootstrap_servers, "file:9092");
        assert_eq!(s.registry.url, DEFAULT_REGISTRY_URL);
        assert_eq!(s.kafka_config().get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(s.kafka_config().get("linger.ms"), Some("7"));
        let s = resolve(Some("flag:1".into()), Some(&path), &[], []).unwrap();
        assert_eq!(s.bootstrap_servers, "flag:1");
    }

    #[test]
    fn unknown_config_field_is_named() {
        let dir = std::env::temp_dir().join(format!("adstream-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.yaml");
        std::fs::write(&path, "bootstrap_server: x:1\n").unwrap();
        let err = format!("{:#}", resolve(None, Some(&path), &[], []).unwrap_err());
        assert!(err.contains("bootstrap_server"), "{err}");
        assert!(err.contains("c.yaml"), "{err}");
    }

    #[test]
    fn the_example_connectors_file_parses_with_every_platform() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors.yaml");
        let file = FileConfig::load(&path).unwrap();
        let connectors = file.connectors.expect("a connectors section");
        for (name, section) in [
            ("google_ads", &connectors.google_ads),
            ("meta", &connectors.meta),
            ("tiktok", &connectors.tiktok),
            ("linkedin", &connectors.linkedin),
        ] {
            let section = section.as_ref().unwrap_or_else(|| panic!("no {name}"));
            assert!(!section.accounts.is_empty(), "{name}");
        }
        assert_eq!(connectors.topics.reports, "platform.reports");
    }

    #[test]
    fn malformed_override_is_rejected() {
        let err = resolve(None, None, &["nokey".into()], []).unwrap_err();
        assert!(err.to_string().contains("nokey"));
    }
}
