"""Start and stop the real local servers the tests run against: Google's Firestore and Pub/Sub emulators,
``bqemulator`` (BigQuery) and ``functions-framework`` (a Cloud Function on a port).

Each server runs in its own process group on a free ``127.0.0.1`` port, logs to a temporary file, and
is only handed out once it answers (``wait_ready``); ``stop`` kills the whole group, so the Java process
``gcloud`` spawns dies with it. A watchdog in each group kills it if the test process dies first.
Nothing here fakes a server: when a binary is missing, ``missing_requirement`` says what to install,
and the tests skip with that reason.

Measured here: Firestore and Pub/Sub emulators ~3.5 s to answer, bqemulator ~1-2 s (with
``BQEMU_ENABLE_FORMAT_EXTENSIONS=false`` and the offline shims in ``bqemulator_shims.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIMS = Path(__file__).with_name("bqemulator_shims.py")
DEFAULT_PROJECT = "goldthread-test"
_BIND_ERRORS = ("Address already in use", "BindException", "address already in use", "Errno 98")


class EmulatorStartError(RuntimeError):
    """A server was present but did not start or answer in time; the message carries its log tail."""


@dataclass
class ManagedProcess:
    """A server started by this module: where it listens, its log, and how long it took to answer."""

    name: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    startup_seconds: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def host_port(self) -> str:
        """``127.0.0.1:PORT`` (the form ``FIRESTORE_EMULATOR_HOST``/``PUBSUB_EMULATOR_HOST`` take)."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host_port}"

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log (for error messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the whole process group (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        # children that outlived the leader (the JVM under gcloud) still carry the group id
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while group_members(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the process group ``pgid`` (Linux ``/proc``; [] elsewhere)."""
    members = []
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        return []
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


# -- discovery -------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gcloud_sdk_root() -> Path | None:
    """The Google Cloud SDK directory holding ``platform/`` (None without ``gcloud``)."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    return Path(gcloud).resolve().parent.parent


_COMPONENTS = {
    "firestore": ("cloud-firestore-emulator", "google-cloud-cli-firestore-emulator"),
    "pubsub": ("pubsub-emulator", "google-cloud-cli-pubsub-emulator"),
}


def missing_requirement(kind: str) -> str | None:
    """Why the server ``kind`` (firestore, pubsub, bigquery, functions) cannot start here, or None."""
    if kind in _COMPONENTS:
        component, package = _COMPONENTS[kind]
        root = gcloud_sdk_root()
        if root is None:
            return f"gcloud not found: install google-cloud-cli and {package}"
        if shutil.which("java") is None:
            return "java not found: the Google emulators need a JRE (Debian: openjdk-17-jre-headless)"
        if not (root / "platform" / component).is_dir():
            return f"{component} missing under {root}/platform: install {package}"
        return None
    if kind == "bigquery":
        try:
            import bqemulator  # noqa: F401
        except ImportError:
            return "bqemulator not installed (pip install bqemulator)"
        return None
    if kind == "functions":
        return None if _venv_script("functions-framework") else "functions-framework not installed"
    raise ValueError(f"unknown server kind {kind!r}")


def _venv_script(name: str) -> str | None:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


# -- starting --------------------------------------------------------------------------------------


def _http_answers(url: str, want: Callable[[int, bytes], bool]) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return want(response.status, response.read())
    except urllib.error.HTTPError as exc:
        return want(exc.code, b"")
    except (OSError, ValueError):
        return False


def wait_ready(proc: ManagedProcess, url: str, want: Callable[[int, bytes], bool], timeout: float) -> None:
    """Poll ``url`` until ``want(status, body)`` holds; raise ``EmulatorStartError`` if the process dies
    or ``timeout`` seconds pass."""
    started = time.monotonic()
    while True:
        if _http_answers(url, want):
            proc.startup_seconds = time.monotonic() - started
            return
        if not proc.alive():
            raise EmulatorStartError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.log_tail()}")
        if time.monotonic() - started > timeout:
            proc.stop()
            raise EmulatorStartError(f"{proc.name} did not answer {url} within {timeout:.0f} s:\n{proc.log_tail()}")
        time.sleep(0.1)


def _spawn(
    name: str,
    argv_for_port: Callable[[int], Sequence[str]],
    ready_path: str,
    want: Callable[[int, bytes], bool],
    *,
    env: Mapping[str, str] | None = None,
    client_env: Callable[[str], dict[str, str]] = lambda host_port: {},
    port: int | None = None,
    timeout: float = 90.0,
    cwd: Path | None = None,
    attempts: int = 3,
) -> ManagedProcess:
    """Start ``argv`` in a new process group on a free port and wait until it answers; retry on a port
    taken in between."""
    last: EmulatorStartError | None = None
    for _ in range(attempts):
        chosen = port or free_port()
        log = tempfile.NamedTemporaryFile(prefix=f"goldthread-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        full_env = {**os.environ, **(env or {})}
        started = time.monotonic()
        process = subprocess.Popen(
            list(argv_for_port(chosen)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=str(cwd or REPO_ROOT),
            start_new_session=True,
        )
        log.close()
        _watch(process.pid)
        proc = ManagedProcess(name, "127.0.0.1", chosen, process, Path(log.name))
        try:
            wait_ready(proc, f"{proc.url}{ready_path}", want, timeout)
        except EmulatorStartError as exc:
            proc.stop()
            last = exc
            if port is None and any(marker in proc.log_tail(200) for marker in _BIND_ERRORS):
                continue
            raise
        proc.startup_seconds = time.monotonic() - started
        proc.env = client_env(proc.host_port)
        return proc
    assert last is not None
    raise last


_WATCHDOG = """
import os, signal, sys, time
parent = int(sys.argv[1])
while os.getppid() == parent:
    time.sleep(0.5)
os.killpg(os.getpgrp(), signal.SIGKILL)
"""


def _watch(pgid: int) -> None:
    """Put a watchdog into the server's process group: when this (test) process dies without calling
    ``stop`` (killed by a timeout, say), the watchdog kills the whole group, itself included."""
    with contextlib.suppress(OSError):
        subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=pgid,
        )


def _gcloud_env() -> dict[str, str]:
    return {
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "1",
    }


def _ok(status: int, body: bytes) -> bool:
    return status == 200


def start_firestore(project: str = DEFAULT_PROJECT, timeout: float = 90.0) -> ManagedProcess:
    """Start Google's Firestore emulator; ``.env`` holds ``FIRESTORE_EMULATOR_HOST`` for clients."""
    reason = missing_requirement("firestore")
    if reason:
        raise EmulatorStartError(reason)
    return _spawn(
        "firestore",
        lambda port: ["gcloud", "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}"],
        "/",
        _ok,
        env=_gcloud_env(),
        client_env=lambda hp: {"FIRESTORE_EMULATOR_HOST": hp},
        timeout=timeout,
    )


def start_pubsub(project: str = DEFAULT_PROJECT, timeout: float = 90.0) -> ManagedProcess:
    """Start Google's Pub/Sub emulator; ``.env`` holds ``PUBSUB_EMULATOR_HOST`` for clients."""
    reason = missing_requirement("pubsub")
    if reason:
        raise EmulatorStartError(reason)
    return _spawn(
        "pubsub",
        lambda port: [
            "gcloud", "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}", f"--project={project}"
        ],
        "/",
        _ok,
        env=_gcloud_env(),
        client_env=lambda hp: {"PUBSUB_EMULATOR_HOST": hp},
        timeout=timeout,
    )


def start_bqemulator(project: str = DEFAULT_PROJECT, timeout: float = 60.0) -> ManagedProcess:
    """Start bqemulator (in memory) through the offline shims; ``.env`` holds
    ``GOLDTHREAD_BIGQUERY_ENDPOINT`` for ``BigQueryWarehouse``."""
    reason = missing_requirement("bigquery")
    if reason:
        raise EmulatorStartError(reason)
    return _spawn(
        "bqemulator",
        lambda port: [
            sys.executable, str(SHIMS), "start",
            "--rest-host", "127.0.0.1", "--rest-port", str(port),
            "--grpc-host", "127.0.0.1", "--grpc-port", "0",
            "--project", project, "--ephemeral", "--log-level", "warning",
        ],
        "/readyz",
        _ok,
        env={"BQEMU_ENABLE_FORMAT_EXTENSIONS": "false"},
        client_env=lambda hp: {"GOLDTHREAD_BIGQUERY_ENDPOINT": f"http://{hp}"},
        timeout=timeout,
    )


def start_function(
    target: str,
    *,
    source: str | Path = "functions/main.py",
    signature_type: str = "cloudevent",
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> ManagedProcess:
    """Serve one Cloud Function with ``functions-framework`` (a push endpoint for the Pub/Sub emulator).

    ``source`` is relative to the repository root unless absolute; ``env`` is added to this process's
    environment (pass the emulator hosts and ``GOLDTHREAD_*`` settings). Ready once it answers HTTP.
    """
    script = _venv_script("functions-framework")
    if script is None:
        raise EmulatorStartError("functions-framework not installed")
    src = Path(source) if Path(source).is_absolute() else REPO_ROOT / source
    return _spawn(
        f"function-{target}",
        lambda p: [
            script, f"--signature-type={signature_type}", "--target", target,
            "--source", str(src), "--host", "127.0.0.1", "--port", str(p),
        ],
        "/",
        lambda status, body: status > 0,  # any HTTP answer: the function refuses a bare GET
        env=env,
        port=port,
        timeout=timeout,
    )


# -- one shared server per kind and test process ----------------------------------------------------

_STARTERS: dict[str, Callable[[], ManagedProcess]] = {
    "firestore": start_firestore,
    "pubsub": start_pubsub,
    "bigquery": start_bqemulator,
}
_RUNNING: dict[str, ManagedProcess] = {}
_SAVED_ENV: dict[str, str | None] = {}
_STARTUP_SECONDS: dict[str, float] = {}
_REPORTED: list[bool] = []


def shared(kind: str) -> ManagedProcess:
    """The server ``kind`` (firestore, pubsub, bigquery), started on first use and kept for the process.

    Its client variables (``FIRESTORE_EMULATOR_HOST``, ``PUBSUB_EMULATOR_HOST``,
    ``GOLDTHREAD_BIGQUERY_ENDPOINT``) are set in ``os.environ`` until ``stop_all``. Several conftest
    files may ask for the same server: it starts once.
    """
    proc = _RUNNING.get(kind)
    if proc is not None and proc.alive():
        return proc
    proc = _STARTERS[kind]()
    _RUNNING[kind] = proc
    _STARTUP_SECONDS[kind] = round(proc.startup_seconds, 2)
    for key, value in proc.env.items():
        _SAVED_ENV.setdefault(key, os.environ.get(key))
        os.environ[key] = value
    if len(_RUNNING) == 1:
        atexit.register(stop_all)
    return proc


def stop_all() -> None:
    """Stop every shared server and restore the environment variables ``shared`` set."""
    while _RUNNING:
        _kind, proc = _RUNNING.popitem()
        proc.stop()
    for key, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _SAVED_ENV.clear()


def startup_times() -> dict[str, float]:
    """Seconds each shared server took from launch to its first good answer, in this process."""
    return dict(_STARTUP_SECONDS)


def startup_report_once() -> str | None:
    """A one-line summary of ``startup_times`` the first time it is asked for (None after, or if none)."""
    if _REPORTED or not _STARTUP_SECONDS:
        return None
    _REPORTED.append(True)
    return "emulator startup (s): " + ", ".join(f"{k}={v}" for k, v in sorted(_STARTUP_SECONDS.items()))


# -- resets ----------------------------------------------------------------------------------------


def reset_firestore(host_port: str, project: str = DEFAULT_PROJECT, database: str = "(default)") -> None:
    """Delete every document of ``project``'s database in the Firestore emulator."""
    url = f"http://{host_port}/emulator/v1/projects/{project}/databases/{database}/documents"
    request = urllib.request.Request(url, method="DELETE")
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 200:
            raise RuntimeError(f"firestore reset answered {response.status}")


def reset_pubsub(project: str, host_port: str) -> None:
    """Delete every subscription and topic of ``project`` in the Pub/Sub emulator."""
    import importlib

    pubsub_v1 = importlib.import_module("google.cloud.pubsub_v1")
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = host_port
    try:
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        for sub in subscriber.list_subscriptions(request={"project": f"projects/{project}"}):
            subscriber.delete_subscription(request={"subscription": sub.name})
        for topic in publisher.list_topics(request={"project": f"projects/{project}"}):
            publisher.delete_topic(request={"topic": topic.name})
        subscriber.close()
    finally:
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous
