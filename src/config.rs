//! Connection settings shared by every subcommand.
//!
//! Precedence, highest first: command-line flag, environment variable (`ADSTREAM_*`), the YAML config file given
//! with `--config`, built-in default. Any librdkafka property (SASL, TLS, timeouts…) passes through unchanged, from
//! the config file's `kafka:` map or from repeated `-X key=value` flags.

use std::collections::BTreeMap;
use std::path::Path;

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
}

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
    /// Schema registry base URL.
    pub registry_url: String,
    /// Extra librdkafka properties, applied after the defaults so users can override anything.
    pub kafka_properties: BTreeMap<String, String>,
}

impl Settings {
    /// Merges flags/env (already merged by clap), the config file and defaults.
    pub fn resolve(
        bootstrap_flag: Option<String>,
        registry_flag: Option<String>,
        config_path: Option<&Path>,
        overrides: &[String],
    ) -> Result<Self> {
        let file = match config_path {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let mut kafka_properties = file.kafka;
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
            registry_url: registry_flag
                .or(file.registry_url)
                .unwrap_or_else(|| DEFAULT_REGISTRY_URL.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = Settings::resolve(None, None, Some(&path), &["linger.ms=7".into()]).unwrap();
        assert_eq!(s.bootstrap_servers, "file:9092");
        assert_eq!(s.registry_url, DEFAULT_REGISTRY_URL);
        assert_eq!(s.kafka_config().get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(s.kafka_config().get("linger.ms"), Some("7"));
        let s = Settings::resolve(Some("flag:1".into()), None, Some(&path), &[]).unwrap();
        assert_eq!(s.bootstrap_servers, "flag:1");
    }

    #[test]
    fn unknown_config_field_is_named() {
        let dir = std::env::temp_dir().join(format!("adstream-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.yaml");
        std::fs::write(&path, "bootstrap_server: x:1\n").unwrap();
        let err = format!(
            "{:#}",
            Settings::resolve(None, None, Some(&path), &[]).unwrap_err()
        );
        assert!(err.contains("bootstrap_server"), "{err}");
        assert!(err.contains("c.yaml"), "{err}");
    }

    #[test]
    fn malformed_override_is_rejected() {
        let err = Settings::resolve(None, None, None, &["nokey".into()]).unwrap_err();
        assert!(err.to_string().contains("nokey"));
    }
}
