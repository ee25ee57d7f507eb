"""adstream's Avro compatibility verdicts against Python avro's ReaderWriterCompatibilityChecker, run live.

The corpus (schemas/tests/compat_corpus/pairs.jsonl, made by generate.py beside it) holds {"name", "old", "new"}
pairs. For each pair the oracle decides BACKWARD (new reads data written with old), FORWARD (old reads data written
with new) and FULL (both); adstream's verdicts come from the `compat_verdicts` example binary of the schemas crate.

Binary: $ADSTREAM_COMPAT_VERDICTS_BIN if set, else $CARGO_TARGET_DIR/debug/examples/compat_verdicts, built with
cargo first (CARGO_TARGET_DIR defaults to ~/.cache/adstream/target, the project's shared target directory).
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

REPO = Path(__file__).resolve().parents[2]
CORPUS_DIR = REPO / "schemas" / "tests" / "compat_corpus"
PAIRS = CORPUS_DIR / "pairs.jsonl"
DIVERGENCES = CORPUS_DIR / "python_divergences.jsonl"
MIN_PAIRS = 220


def load(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def parse(schema):
    with warnings.catch_warnings():
        # Logical types Python avro does not know (e.g. local-timestamp-micros) fall back to their base type with a
        # warning; that base type is also all Java's and Python's checkers look at.
        warnings.simplefilter("ignore")
        return avro.schema.parse(json.dumps(schema))


def can_read(reader, writer):
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    return result.compatibility is SchemaCompatibilityType.compatible


def oracle(pair):
    old, new = parse(pair["old"]), parse(pair["new"])
    backward = can_read(reader=new, writer=old)
    forward = can_read(reader=old, writer=new)
    return {"backward": backward, "forward": forward, "full": backward and forward}


def verdicts_binary():
    explicit = os.environ.get("ADSTREAM_COMPAT_VERDICTS_BIN")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "adstream" / "target"))
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "adstream-schemas", "--example", "compat_verdicts"],
        cwd=REPO,
        check=True,
        env=dict(os.environ, CARGO_TARGET_DIR=str(target)),
    )
    return target / "debug" / "examples" / "compat_verdicts"


@pytest.fixture(scope="module")
def binary():
    path = verdicts_binary()
    assert path.is_file(), f"compat_verdicts binary not found at {path}"
    return path


def ours(binary, corpus_path):
    run = subprocess.run([str(binary), str(corpus_path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, f"{binary} failed on {corpus_path}: {run.stderr.strip()}"
    out = {}
    for line in run.stdout.splitlines():
        verdict = json.loads(line)
        out[verdict["name"]] = verdict
    return out


def describe(name, levels, theirs, mine):
    diff = ", ".join(f"{level}: python={theirs[level]} adstream={mine.get(level)}" for level in levels)
    if "error" in mine:
        return f"{name}: {mine['error']}"
    why = [f"{d}: " + "; ".join(mine[f"why_{d}"]) for d in ("backward", "forward") if mine.get(f"why_{d}")]
    return f"{name}: {diff}" + (f" (adstream's reasons, {' | '.join(why)})" if why else "")


def test_corpus_is_large_reproducible_and_named_uniquely():
    pairs = load(PAIRS)
    assert len(pairs) >= MIN_PAIRS, f"corpus has {len(pairs)} pairs, want at least {MIN_PAIRS}"
    names = [p["name"] for p in pairs]
    assert len(set(names)) == len(names), "pair names are not unique"
    check = subprocess.run([sys.executable, str(CORPUS_DIR / "generate.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr or check.stdout


def test_verdicts_equal_python_avro(binary):
    pairs = load(PAIRS)
    mine = ours(binary, PAIRS)
    levels = ("backward", "forward", "full")
    disagreements = []
    corrected = 0  # pairs where apache-avro's checker alone would disagree with Python avro
    for pair in pairs:
        theirs = oracle(pair)
        verdict = mine.get(pair["name"], {"error": "no verdict printed"})
        if "error" in verdict or any(verdict.get(level) != theirs[level] for level in levels):
            disagreements.append(describe(pair["name"], levels, theirs, verdict))
        alone = (verdict.get("apache_avro_backward"), verdict.get("apache_avro_forward"))
        corrected += alone != (theirs["backward"], theirs["forward"])
    agreed = len(pairs) - len(disagreements)
    print(f"adstream agrees with Python avro on {agreed}/{len(pairs)} pairs under BACKWARD, FORWARD and FULL; "
          f"apache-avro's checker alone would disagree on {corrected}")
    assert not disagreements, f"{len(disagreements)} of {len(pairs)} pairs disagree:\n" + "\n".join(disagreements)


def test_documented_python_divergences_follow_java(binary):
    """Where Python avro departs from Java (which Confluent runs), adstream follows Java. Each case must still show
    the divergence in Python, so the list stays truthful when Python avro changes."""
    cases = load(DIVERGENCES)
    assert cases, "no divergence cases"
    mine = ours(binary, DIVERGENCES)
    levels = ("backward", "forward", "full")
    problems = []
    for case in cases:
        theirs, java, verdict = oracle(case), case["java"], mine[case["name"]]
        if theirs == java:
            problems.append(f"{case['name']}: Python avro now agrees with Java ({java}); move it to pairs.jsonl")
        if any(verdict.get(level) != java[level] for level in levels):
            problems.append(describe(case["name"], levels, java, verdict).replace("python=", "java="))
    assert not problems, "\n".join(problems)
