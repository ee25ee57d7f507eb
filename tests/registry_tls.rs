//! The registry client over HTTPS with credentials, the way a managed registry (Confluent Cloud) is reached: adstream's
//! registry behind nginx (Debian's nginx-light, installed by dev/setup) terminating TLS with a certificate of a
//! self-signed CA made here with openssl, and asking for HTTP basic auth. The library client and the CLI register
//! and fetch a schema through it; a wrong password, a missing password and an untrusted CA each fail with an error
//! naming the registry URL (and the HTTP status where there is one).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use adstream_kafka::registry_client::{
    FailureKind, RegistryAuth, RegistryClient, RegistryClientError, RegistrySettings,
};

use common::{start_registry, unique};

const SCHEMA: &str = r#"{"type":"record","name":"Probe","namespace":"io.adstream.test","fields":[{"name":"id","type":"string"}]}"#;
const USER: &str = "api-key";
const PASSWORD: &str = "api:secret";

/// Runs `program` with `args` in `dir`, failing the test with its output unless it succeeds.
fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (dev/setup installs it): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A CA and a certificate it signed for 127.0.0.1, in `dir`: ca.pem, server.pem, server.key.
fn make_certificates(dir: &Path) {
    run(
        dir,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=adstream test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    run(
        dir,
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write san.ext");
    run(
        dir,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// nginx on 127.0.0.1:`port`: TLS with server.pem, basic auth `USER`/`PASSWORD`, proxying to `upstream`.
/// Stopped (killed: one process, `master_process off`) when dropped.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_proxy(dir: &Path, port: u16, upstream: &str) -> Proxy {
    let hash = run(dir, "openssl", &["passwd", "-apr1", PASSWORD]);
    let hash = String::from_utf8_lossy(&hash.stdout).trim().to_owned();
    std::fs::write(dir.join("htpasswd"), format!("{USER}:{hash}\n")).expect("htpasswd");
    let d = dir.display();
    let config = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{}}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;\n\
           uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
           server {{\n\
             listen 127.0.0.1:{port} ssl;\n\
             ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;\n\
             auth_basic \"adstream registry\"; auth_basic_user_file {d}/htpasswd;\n\
             location / {{ proxy_pass {upstream}; }}\n\
           }}\n\
         }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), config).expect("nginx.conf");
    let child = Command::new("nginx")
        .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log")])
        .args(["-c", &format!("{d}/nginx.conf")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx runs (dev/setup installs nginx-light)");
    let proxy = Proxy(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on {port}: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn settings(url: &str, auth: RegistryAuth, ca: Option<PathBuf>) -> RegistrySettings {
    RegistrySettings {
        url: url.to_owned(),
        auth,
        ca_location: ca,
    }
}

/// `adstream schemas register` through the proxy, configured by environment as in the chart.
fn cli_register(url: &str, user_info: &str, ca: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_adstream"))
        .args(["schemas", "register"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ADSTREAM_BOOTSTRAP_SERVERS", common::bootstrap())
        .env("ADSTREAM_REGISTRY_URL", url)
        .env("ADSTREAM_REGISTRY_BASIC_AUTH_USER_INFO", user_info)
        .env("ADSTREAM_REGISTRY_SSL_CA_LOCATION", ca)
        .env_remove("ADSTREAM_CONFIG")
        .output()
        .expect("adstream runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_basic_auth_registers_and_fetches_and_names_refusals() {
    let registry = start_registry("tls").await;
    let dir = std::env::temp_dir().join(unique("registry-tls"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    make_certificates(&dir);
    let port = free_port();
    let _proxy = start_proxy(&dir, port, &registry.url);
    let url = format!("https://127.0.0.1:{port}");
    let ca = dir.join("ca.pem");
    let subject = unique("tls-probe-value");
    let good = RegistryAuth::from_user_info(&format!("{USER}:{PASSWORD}")).expect("user info");

    // Register and fetch back through TLS and basic auth.
    let client = RegistryClient::connect(
        &settings(&url, good.clone(), Some(ca.clone())),
        Duration::from_secs(10),
    )
    .expect("client");
    let id = client.register(&subject, SCHEMA).await.expect("register");
    let fetched = client
        .schema_by_id(id)
        .await
        .expect("fetch")
        .expect("the id exists");
    assert!(fetched.contains("io.adstream.test"), "{fetched}");
    let latest = client.latest(&subject).await.expect("latest");
    assert_eq!(latest.map(|s| (s.id, s.version)), Some((id, 1)));

    // The same credentials in the URL's user info (Confluent's basic.auth.credentials.source=URL).
    let in_url = format!("https://{USER}:api%3Asecret@127.0.0.1:{port}");
    let client = RegistryClient::connect(
        &settings(&in_url, RegistryAuth::None, Some(ca.clone())),
        Duration::from_secs(10),
    )
    .expect("client");
    assert_eq!(
        client.lookup(&subject, SCHEMA).await.expect("lookup"),
        Some((id, 1))
    );

    // A wrong password: HTTP 401, named with the URL, and classed as a credentials problem.
    let wrong = RegistryAuth::from_user_info(&format!("{USER}:wrong")).expect("user info");
    let client = RegistryClient::connect(
        &settings(&url, wrong, Some(ca.clone())),
        Duration::from_secs(10),
    )
    .expect("client");
    let error = client.register(&subject, SCHEMA).await.unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, RegistryClientError::Http { status: 401, .. }),
        "{error:?}"
    );
    assert_eq!(error.kind(), FailureKind::Unauthorized);
    assert!(text.contains(&format!("{url}/subjects/")), "{text}");
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(
        !text.contains("wrong"),
        "the password must not be shown: {text}"
    );
    assert!(!text.contains('\n'), "one line: {text}");

    // No credentials at all: the message says which settings are missing.
    let client = RegistryClient::connect(
        &settings(&url, RegistryAuth::None, Some(ca.clone())),
        Duration::from_secs(10),
    )
    .expect("client");
    let text = client.latest(&subject).await.unwrap_err().to_string();
    assert!(text.contains("basic.auth.user.info"), "{text}");

    // Without the CA bundle the server's certificate is not trusted: TLS is really checked.
    let client = RegistryClient::connect(&settings(&url, good, None), Duration::from_secs(10))
        .expect("client");
    let error = client.latest(&subject).await.unwrap_err();
    assert!(
        matches!(error, RegistryClientError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&url), "{error}");

    // The CLI, configured by environment as the chart configures it.
    let registered = cli_register(&url, &format!("{USER}:{PASSWORD}"), &ca);
    assert!(
        registered.status.success(),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    let refused = cli_register(&url, &format!("{USER}:nope"), &ca);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(&url) && stderr.contains("HTTP 401"),
        "{stderr}"
    );
    assert!(!stderr.contains("nope"), "{stderr}");

    let _ = std::fs::remove_dir_all(dir);
}
