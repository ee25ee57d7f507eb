"""Shared pytest fixtures for the Python tests that drive adstream with third-party clients.

Fixtures (add new shared ones here, each with a docstring):

- ``adstream_bin``      path of the built ``adstream`` binary (``$ADSTREAM_BIN``, else
                        ``$CARGO_TARGET_DIR/debug/adstream``, else ``~/.cache/adstream/target/debug/adstream``).
- ``bootstrap``         Kafka bootstrap servers of the local broker (``$ADSTREAM_BOOTSTRAP_SERVERS``,
                        default ``127.0.0.1:9092``; start it with ``./dev/kafka up``).
- ``registry_factory``  starts ``adstream registry serve`` subprocesses: ``registry_factory(topic=None)`` returns a
                        :class:`RegistryProcess` (``.url``, ``.topic``, ``.stop()``, ``.restart()``); every process
                        is stopped at the end of the session.
- ``registry``          URL of one registry shared by the whole session, on its own ``_schemas-pytest-<random>``
                        topic.
"""

import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _default_binary():
    if os.environ.get("ADSTREAM_BIN"):
        return os.environ["ADSTREAM_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "adstream", "target")
    return os.path.join(target, "debug", "adstream")


def _free_port():
    """A port nothing listens on right now (the registry binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RegistryProcess:
    """One ``adstream registry serve`` subprocess on a given topic."""

    START_TIMEOUT_S = 60

    def __init__(self, binary, bootstrap, topic):
        self.binary = binary
        self.bootstrap = bootstrap
        self.topic = topic
        self.url = None
        self._process = None
        self._stderr = None

    def start(self):
        """Starts the registry on a free port and waits until ``GET /`` answers; fails with its stderr otherwise."""
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        # A file, not a pipe: a chatty process must never block on a full pipe nobody reads.
        self._stderr = tempfile.TemporaryFile(mode="w+")
        env = dict(os.environ, ADSTREAM_BOOTSTRAP_SERVERS=self.bootstrap)
        self._process = subprocess.Popen(
            [self.binary, "registry", "serve", "--listen", f"127.0.0.1:{port}", "--topic", self.topic],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
        )
        deadline = time.monotonic() + self.START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"adstream registry serve exited with {self._process.returncode}:\n{self.stderr()}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"adstream registry serve did not answer on {self.url} within "
                           f"{self.START_TIMEOUT_S}s:\n{self.stderr()}")

    def stderr(self):
        """What the process wrote to stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self):
        """Stops the process (SIGTERM, so it shuts down cleanly; SIGKILL if it does not within 15 s)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        self._process = None

    def restart(self):
        """Stops and starts a new process on the same topic (and a new port)."""
        self.stop()
        return self.start()


@pytest.fixture(scope="session")
def adstream_bin():
    """Path of the built ``adstream`` binary."""
    path = _default_binary()
    if not os.access(path, os.X_OK):
        pytest.fail(f"adstream binary not found at {path}: run `cargo build` (or set ADSTREAM_BIN)")
    return path


@pytest.fixture(scope="session")
def bootstrap():
    """Bootstrap servers of the local Kafka broker."""
    return os.environ.get("ADSTREAM_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


@pytest.fixture(scope="session")
def registry_factory(adstream_bin, bootstrap):
    """``start(topic=None) -> RegistryProcess``: a registry subprocess on ``topic`` (default: a fresh one)."""
    started = []

    def start(topic=None):
        process = RegistryProcess(adstream_bin, bootstrap, topic or f"_schemas-pytest-{uuid.uuid4().hex[:12]}")
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def registry(registry_factory):
    """URL of the session's shared registry."""
    return registry_factory().url
