//! afl++ entry point of the `wire_decode` target; the body is in `fuzz/harness/wire_decode.rs`.

#[path = "../harness/wire_decode.rs"]
mod harness;

fn main() {
    afl::fuzz!(|data: &[u8]| harness::run(data));
}
