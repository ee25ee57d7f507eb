//! afl++ entry point of the `registry_schema` target; the body is in `fuzz/harness/registry_schema.rs`.

#[path = "../harness/registry_schema.rs"]
mod harness;

fn main() {
    afl::fuzz!(|data: &[u8]| harness::run(data));
}
