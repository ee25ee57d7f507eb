//! afl++ entry point of the `topology_parse` target; the body is in `fuzz/harness/topology_parse.rs`.

#[path = "../harness/topology_parse.rs"]
mod harness;

fn main() {
    afl::fuzz!(|data: &[u8]| harness::run(data));
}
