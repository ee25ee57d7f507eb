//! Replays the checked-in fuzz corpus and crash reproducers through the fuzz targets' own bodies.
//!
//! Every file under `fuzz/corpus/<target>/` (what afl++ found, minimized) and `fuzz/regressions/<target>/` (inputs
//! that once crashed, kept after the fix) is fed to the same function the afl binary calls (`fuzz/harness/`), so
//! a regression in any of the fuzzed parsers fails the normal test suite without running a fuzzer. No broker
//! needed. See the README, "Fuzzing".

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/harness/registry_schema.rs"]
mod registry_schema;
#[path = "../fuzz/harness/sql_check.rs"]
mod sql_check;
#[path = "../fuzz/harness/topology_parse.rs"]
mod topology_parse;
#[path = "../fuzz/harness/wire_decode.rs"]
mod wire_decode;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Stack of the replay thread: a main thread's 8 MiB, as the afl binaries run with. The test harness's default
/// 2 MiB is too small for deeply nested SQL from the corpus in an unoptimized build (DataFusion's parser and the
/// read-only visitor recurse with large debug frames); optimized builds handle the same inputs on 2 MiB.
const REPLAY_STACK_BYTES: usize = 8 * 1024 * 1024;

/// Feeds every corpus and regression file of `target` to `run` on a thread with [`REPLAY_STACK_BYTES`].
fn replay(target: &'static str, run: fn(&[u8])) {
    std::thread::Builder::new()
        .name(format!("replay-{target}"))
        .stack_size(REPLAY_STACK_BYTES)
        .spawn(move || replay_here(target, run))
        .expect("spawn replay thread")
        .join()
        .unwrap_or_else(|panic| panic::resume_unwind(panic));
}

/// Feeds every corpus and regression file of `target` to `run`; fails naming each file that panicked.
fn replay_here(target: &str, run: fn(&[u8])) {
    let corpus = files_in(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty: run `dev/fuzz seed` (or `dev/fuzz minimize {target}`)"
    );
    let regressions = files_in(&fuzz_dir().join("regressions").join(target));
    let mut panicked = Vec::new();
    for file in corpus.iter().chain(&regressions) {
        let data = std::fs::read(file).expect("read corpus file");
        if panic::catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            panicked.push(file.display().to_string());
        }
    }
    assert!(
        panicked.is_empty(),
        "{target}: {} input(s) panicked: {panicked:?}",
        panicked.len()
    );
}

#[test]
fn wire_decode_corpus() {
    replay("wire_decode", wire_decode::run);
}

#[test]
fn registry_schema_corpus() {
    replay("registry_schema", registry_schema::run);
}

#[test]
fn topology_parse_corpus() {
    replay("topology_parse", topology_parse::run);
}

#[test]
fn sql_check_corpus() {
    replay("sql_check", sql_check::run);
}

/// Writes the wire-format seeds of `wire_decode` (values built from the contract types, framed with the ids the
/// target knows, plus one with an id it does not) into `fuzz/corpus/wire_decode/`. Run by `dev/fuzz seed`.
#[test]
#[ignore = "writes seed files; run by dev/fuzz seed"]
fn write_wire_seeds() {
    use adstream_processors::runtime::WireEncoder;
    use adstream_schemas::events::{avsc, AdClick, AdImpression, Device, Placement, Platform};

    let click = AdClick {
        event_id: "seed-click".into(),
        event_time: 1_767_225_600_000,
        platform: Platform::Tiktok,
        account_id: "tiktok-acct-00".into(),
        campaign_id: "tiktok-cmp-0002".into(),
        ad_group_id: "tiktok-cmp-0002-ag-0".into(),
        creative_id: "tiktok-cmp-0002-cr-1".into(),
        user_id: Some("u-00000042".into()),
        impression_id: Some("seed-impression".into()),
        device: Device::Mobile,
        cost_micros: 250_000,
        currency: "USD".into(),
    };
    let impression = AdImpression {
        event_id: "seed-impression".into(),
        event_time: 1_767_225_600_000,
        platform: Platform::Meta,
        account_id: "meta-acct-00".into(),
        campaign_id: "meta-cmp-0001".into(),
        ad_group_id: "meta-cmp-0001-ag-0".into(),
        creative_id: "meta-cmp-0001-cr-0".into(),
        user_id: None,
        placement: Placement::Feed,
        device: Device::Desktop,
        cost_micros: 1_500,
        currency: "EUR".into(),
    };
    let dir = fuzz_dir().join("corpus").join("wire_decode");
    std::fs::create_dir_all(&dir).expect("corpus dir");
    let mut out = Vec::new();
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).expect("write seed");
    };
    for (name, id) in [
        ("click", wire_decode::CLICK_ID),
        ("click-as-impression-id", wire_decode::IMPRESSION_ID),
        ("click-unknown-id", 99),
    ] {
        WireEncoder::new(avsc::AD_CLICK, id)
            .expect("encoder")
            .encode(&click, &mut out)
            .expect("encode");
        write(&format!("seed-{name}"), &out);
    }
    WireEncoder::new(avsc::AD_IMPRESSION, wire_decode::IMPRESSION_ID)
        .expect("encoder")
        .encode(&impression, &mut out)
        .expect("encode");
    write("seed-impression", &out);
    // Headers as the carving reads them: key length, key, value length (0xff: null), value.
    write(
        "seed-headers",
        b"\x07ce_type\x17io.adstream.ads.AdClick\x0ecorrelation_id\xff\x02\xc3\x28\x01x",
    );
}
