//! afl++ entry point of the `sql_check` target; the body is in `fuzz/harness/sql_check.rs`.

#[path = "../harness/sql_check.rs"]
mod harness;

fn main() {
    afl::fuzz!(|data: &[u8]| harness::run(data));
}
