//! Fuzz target `topology_parse`: arbitrary text as a topology file.
//!
//! Shared by the afl binary (`fuzz/fuzz_targets/topology_parse.rs`) and the corpus replay (`tests/fuzz_corpus.rs`).

/// Parses `data` (when UTF-8) as a topology; errors are fine, panics are not.
pub fn run(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = adstream_topology::Topology::parse(text, "fuzz");
    }
}
