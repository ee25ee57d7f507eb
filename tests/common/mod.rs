//! Helpers shared by the integration tests: the broker address, an in-process registry on a private `_schemas`
//! topic, running the `adstream` binary, scratch folders.
#![allow(dead_code)] // each test binary uses a different subset

pub mod jobs;
pub mod recompute;
pub mod verdict;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// Bootstrap servers of the local broker (`./dev/kafka up`).
pub fn bootstrap() -> String {
    std::env::var("ADSTREAM_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Bootstrap servers of the local three-node cluster (`./dev/kafka up --brokers 3`):
/// `ADSTREAM_CLUSTER_BOOTSTRAP_SERVERS`, else those `dev/kafka` gives it.
pub fn cluster() -> String {
    std::env::var("ADSTREAM_CLUSTER_BOOTSTRAP_SERVERS")
        .unwrap_or_else(|_| "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094".into())
}

/// A port free on loopback right now (bind, read, release).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// GET `url`: the status and the body, None when nothing answers.
pub async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// The value of the first sample of `metric` whose labels contain `labels`.
pub fn sample(text: &str, metric: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(metric) && l.contains(labels))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A name unique to this test run, for topics and folders.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{name}-{}-{nanos}", std::process::id())
}

/// A registry served in-process until the test ends.
pub struct TestRegistry {
    /// Base URL.
    pub url: String,
    /// Its `_schemas` topic.
    pub topic: String,
}

/// Starts the registry on `127.0.0.1:0` with a private `_schemas` topic.
pub async fn start_registry(name: &str) -> TestRegistry {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let topic = unique(&format!("_schemas-{name}"));
    let mut kafka = rdkafka::ClientConfig::new();
    kafka.set("bootstrap.servers", bootstrap());
    let config = adstream_registry::RegistryConfig {
        kafka,
        topic: topic.clone(),
        kafka_timeout: Duration::from_secs(10),
    };
    tokio::spawn(adstream_registry::serve(
        listener,
        config,
        std::future::pending(),
    ));
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return TestRegistry { url, topic };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("registry on {url} did not come up");
}

/// Output of one `adstream` run.
pub struct Run(pub Output);

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
}

impl std::ops::Deref for Run {
    type Target = Output;
    fn deref(&self) -> &Output {
        &self.0
    }
}

/// Runs the `adstream` binary from the repository root against the local broker.
pub fn adstream(args: &[&str]) -> Run {
    Run(Command::new(env!("CARGO_BIN_EXE_adstream"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ADSTREAM_BOOTSTRAP_SERVERS", bootstrap())
        .env_remove("ADSTREAM_REGISTRY_URL")
        .env_remove("ADSTREAM_CONFIG")
        .output()
        .expect("adstream runs"))
}

/// A scratch copy of `schemas/*.avsc`.
pub fn copy_schemas(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for entry in std::fs::read_dir(&source).expect("schemas dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("avsc") {
            std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    dir
}

/// Waits until every topic in `names` is in the metadata with a leader for each partition: right after
/// `create_topics` returns, a producer or consumer may still see the topic as missing or leaderless.
pub fn wait_for_topics(names: &[String]) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", bootstrap());
    let consumer: BaseConsumer = config.create().expect("metadata client");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ready = consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .map(|metadata| {
                names.iter().all(|name| {
                    metadata.topics().iter().any(|t| {
                        t.name() == name
                            && t.error().is_none()
                            && !t.partitions().is_empty()
                            && t.partitions()
                                .iter()
                                .all(|p| p.leader() >= 0 && p.error().is_none())
                    })
                })
            })
            .unwrap_or(false);
        if ready {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "topics {names:?} not ready within 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
