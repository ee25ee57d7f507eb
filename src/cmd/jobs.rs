//! `adstream jobs`: the jobs of the registry, their ports and their settings with defaults.

use std::fmt::Write as _;

use adstream_processors::jobs::{JobRegistry, PortList};

/// Prints every job (or, with `names_only`, one name per line for scripts).
pub fn list(names_only: bool) {
    let text = describe(names_only);
    // A closed pipe (`adstream jobs | head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
}

fn describe(names_only: bool) -> String {
    let mut out = String::new();
    for job in JobRegistry::builtin().jobs() {
        if names_only {
            writeln!(out, "{}", job.name()).ok();
            continue;
        }
        writeln!(out, "{} — {}", job.name(), job.about()).ok();
        out.push_str("  ports (topics found in the processor entry by the records they carry):\n");
        for port in job.ports() {
            let list = match port.list {
                PortList::Input => "input",
                PortList::Repartition => "repartition",
                PortList::Output => "output",
            };
            let mut note = String::new();
            if !port.name_contains.is_empty() {
                note.push_str(&format!(", name contains '{}'", port.name_contains));
            }
            if !port.required {
                note.push_str(", optional");
            }
            writeln!(
                out,
                "    {:<12} {:<11} {}{note}",
                port.role, list, port.record
            )
            .ok();
        }
        writeln!(
            out,
            "  settings (flags of `adstream process {}`, or YAML):",
            job.name()
        )
        .ok();
        for line in job.default_settings_yaml().lines() {
            writeln!(out, "    {line}").ok();
        }
        out.push('\n');
    }
    out
}
