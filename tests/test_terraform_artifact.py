"""The deployed source archive works on its own (issue 17, part 7).

The archive is built here from the file list ``terraform/functions.tf`` zips (``data.archive_file.source``:
main.py and requirements.txt at the root, the goldthread package next to them), unpacked, and given a clean
virtualenv with only its own ``requirements.txt`` installed, as Cloud Build does. Each entry point is then
served by functions-framework from the unpacked archive, with nothing of the repository on the path and the
embedded defaults (``GOLDTHREAD_HOME`` in a temporary directory, so no cloud is needed), and answers one real
request: an HTTP call, or a Pub/Sub push in the form the push subscriptions of ``pubsub.tf`` send it. The
effects are read back from the embedded warehouse afterwards.

Slow (a ``pip install`` of the runtime, one server start per function): marked ``slow``; needs PyPI (or the
pip cache), like ``make test``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_terraform import REPO, config, dynamic, entry_points, one

pytestmark = pytest.mark.slow

DS = "2024-01-05"
SIM_ACCOUNT = "SIM-ACCOUNT-1"  # the simulated broker's account (goldthread.adapters.sim_broker)
START_TIMEOUT = 90.0
REQUEST_TIMEOUT = 120.0


# -- the archive, as Terraform builds it ----------------------------------------------------------


def archive_files() -> dict[str, Path]:
    """Archive name -> repository file, read from ``data.archive_file.source`` (functions.tf)."""
    archive = config().data["archive_file"]["source"]
    files: dict[str, Path] = {}
    for source in archive["source"]:
        m = re.fullmatch(r'\$\{file\("\$\{local\.repo_root\}/([^"$]+)"\)\}', source["content"])
        assert m, f"cannot follow {source['content']!r}"
        files[source["filename"]] = REPO / m.group(1)

    package = dynamic(archive, "source")
    assert package["for_each"] == "${local.package_files}"
    content = one(package["content"])
    assert content["filename"] == "${source.value}"
    m = re.fullmatch(r'\$\{file\("\$\{local\.repo_root\}/(\w+)/\$\{source\.value\}"\)\}', content["content"])
    assert m, content["content"]
    base = REPO / m.group(1)
    expression = config().locals["package_files"]
    found = re.search(r'fileset\("\$\{local\.repo_root\}/(\w+)", "([\w/]+)/\*\*"\)', expression)
    assert found and REPO / found.group(1) == base, expression
    # The filter of local.package_files, applied the same way.
    assert 'if !strcontains(f, "__pycache__") && !endswith(f, ".pyc")' in expression, expression
    for path in sorted((base / found.group(2)).rglob("*")):
        name = path.relative_to(base).as_posix()
        if path.is_file() and "__pycache__" not in name and not name.endswith(".pyc"):
            files[name] = path
    return files


def build_archive(target: Path) -> Path:
    """The zip ``archive_file`` writes (mode 0644 for every file), at ``target``."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in sorted(archive_files().items()):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return target


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The unpacked archive (``src``) and a clean virtualenv (``venv``) with its requirements installed."""
    root = tmp_path_factory.mktemp("artifact")
    src = root / "src"
    with zipfile.ZipFile(build_archive(root / "goldthread-source.zip")) as zf:
        zf.extractall(src)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-r", str(src / "requirements.txt")],
        capture_output=True, text=True, timeout=1800, cwd=src, env=_clean_env(root),
    )
    assert install.returncode == 0, f"pip install -r requirements.txt failed:\n{install.stdout}\n{install.stderr}"
    return {"root": root, "src": src, "venv": venv}


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment with nothing of the repository or the test virtualenv in it."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE", "HTTPS_PROXY",
                "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy", "SSL_CERT_FILE"):
        if key in os.environ:
            env[key] = os.environ[key]
    # pip's cache, when there is one, saves downloading the wheels again.
    env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    env.update(extra)
    return env


# -- serving one function -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(deployed: dict[str, Path], target: str, home: Path) -> Iterator[str]:
    """functions-framework serving ``target`` from the unpacked archive; yields its base URL."""
    signature = "http" if entry_points()[target] == "http" else "cloudevent"
    port = _free_port()
    log = home / f"{target}.log"
    home.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(deployed["venv"] / "bin" / "functions-framework"), "--target", target,
             "--signature-type", signature, "--source", "main.py", "--host", "127.0.0.1", "--port", str(port)],
            cwd=deployed["src"], stdout=out, stderr=subprocess.STDOUT,
            env=_clean_env(home, GOLDTHREAD_HOME=str(home / "goldthread")),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{target} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                urllib.request.urlopen(url + "/", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # any HTTP answer: it is up (a function may refuse a bare GET)
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{target} did not answer within {START_TIMEOUT}s:\n{log.read_text()[-4000:]}")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def post(url: str, body: dict[str, Any]) -> tuple[int, str]:
    """POST JSON; the status and body of the answer, whatever the status."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def push_body(data: dict[str, Any], attributes: dict[str, str]) -> dict[str, Any]:
    """A Pub/Sub push request exactly as a (wrapped) push subscription sends it."""
    return {
        "message": {
            "data": base64.b64encode(json.dumps(data).encode()).decode(),
            "attributes": attributes,
            "messageId": "4242424242",
            "publishTime": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        },
        "subscription": "projects/goldthread-local/subscriptions/goldthread-sub",
        "deliveryAttempt": 1,
    }


def push_path(topic: str) -> str:
    """The path pubsub.tf appends to a subscriber's URL (functions-framework takes the topic from it)."""
    return f"/projects/goldthread-local/topics/{topic}"


def warehouse_rows(home: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of the embedded warehouse the served functions wrote (read after they stopped)."""
    import duckdb

    path = home / "goldthread" / "warehouse.duckdb"
    assert path.exists(), "the function wrote no warehouse"
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


# -- the archive itself ---------------------------------------------------------------------------

# entry point -> the request this module sends it (each test below sends them)
REQUESTS = {
    "dispatch": "HTTP {loop: accounts, ds}",
    "subscribe_accounts": "push of the dispatched work item",
    "subscribe_trades": "push of a malformed work item",
    "subscribe_rejected_signals": "push of a malformed work item",
    "subscribe_expired_signals": "push of a malformed work item",
    "dead_letter_sink": "push of a dead-lettered message",
    "replay": "HTTP dry run",
    "patch_fees": "HTTP dry run",
    "patch_prices": "HTTP dry run",
    "canary": "HTTP run",
}


def test_every_entry_point_gets_a_request() -> None:
    assert set(REQUESTS) == set(entry_points())


def test_the_archive_holds_main_py_requirements_and_the_package_only(tmp_path: Path) -> None:
    with zipfile.ZipFile(build_archive(tmp_path / "a.zip")) as zf:
        names = set(zf.namelist())
    assert {"main.py", "requirements.txt", "goldthread/__init__.py", "goldthread/entrypoints.py"} <= names
    assert all(n in ("main.py", "requirements.txt") or n.startswith("goldthread/") for n in names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    # The SQL and HTML the package reads at run time travel with it (package data, not only .py files).
    assert any(n.startswith("goldthread/bi/") and n.endswith(".sql") for n in names)


def test_the_served_code_is_the_archive_and_nothing_else(deployed: dict[str, Path]) -> None:
    probe = (
        "import sys, goldthread, main\n"
        "print(goldthread.__file__); print(main.__file__)\n"
        "import importlib.util as u; print(u.find_spec('tests'), u.find_spec('functions'))\n"
    )
    result = subprocess.run(
        [str(deployed["venv"] / "bin" / "python"), "-c", probe], cwd=deployed["src"], capture_output=True,
        text=True, timeout=120, env=_clean_env(deployed["root"]),
    )
    assert result.returncode == 0, result.stderr
    package, main, others = result.stdout.splitlines()
    assert Path(package).is_relative_to(deployed["src"]) and Path(main).is_relative_to(deployed["src"])
    assert others == "None None", "nothing of the repository may be importable"


# -- one real request per function ----------------------------------------------------------------


def test_dispatch_then_the_pushed_work_item_archives_the_account(deployed: dict[str, Path], tmp_path: Path) -> None:
    """Loop D end to end across two served functions: dispatch publishes one work item per account; the
    same item, pushed to subscribe_accounts, becomes the day's snapshot_accounts row."""
    with serve(deployed, "dispatch", tmp_path) as url:
        status, body = post(url, {"loop": "accounts", "ds": DS})
    assert status == 200, body
    run = json.loads(body)
    assert (run["loop"], run["ds"], run["published"]) == ("accounts", DS, 1)

    # The work item as the dispatcher publishes it: the body, and its routing fields again as attributes.
    item = {
        "run_id": run["run_id"], "loop": "accounts", "ds": DS, "doc_id": SIM_ACCOUNT, "schema_version": "1",
        "published_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    attributes = {k: item[k] for k in ("run_id", "loop", "ds", "doc_id", "schema_version")}
    with serve(deployed, "subscribe_accounts", tmp_path) as url:
        status, body = post(url + push_path("goldthread-accounts"), push_body(item, attributes))
    assert status == 200, body
    rows = warehouse_rows(tmp_path, "SELECT account_id, CAST(ds AS VARCHAR), run_id, equity FROM snapshot_accounts")
    assert len(rows) == 1
    account, ds, run_id, equity = rows[0]
    assert (account, ds, run_id) == (SIM_ACCOUNT, DS, run["run_id"])
    assert equity is not None and equity > 0


@pytest.mark.parametrize(
    ("target", "loop"),
    [
        ("subscribe_trades", "trades"),
        ("subscribe_rejected_signals", "rejected_signals"),
        ("subscribe_expired_signals", "expired_signals"),
    ],
)
def test_a_malformed_push_is_acknowledged_as_a_dead_letter(
    deployed: dict[str, Path], tmp_path: Path, target: str, loop: str
) -> None:
    """A work item missing its run, day and publish time can never pass: the subscriber acknowledges it (200,
    so Pub/Sub does not retry) and records it with one field-level error per missing field."""
    topic = f"goldthread-{loop.replace('_', '-')}"
    with serve(deployed, target, tmp_path) as url:
        status, body = post(url + push_path(topic), push_body({"doc_id": "doc-1", "loop": loop}, {"loop": loop}))
    assert status == 200, body
    rows = warehouse_rows(tmp_path, "SELECT loop, reason_code, errors_json, topic FROM dead_letters")
    assert len(rows) == 1
    row_loop, reason, errors_json, row_topic = rows[0]
    assert (row_loop, reason, row_topic) == (loop, "MALFORMED", topic)
    missing = {e["loc"] for e in json.loads(errors_json) if e["type"] == "missing"}
    assert missing == {"run_id", "ds", "published_at"}


def test_the_dead_letter_sink_records_what_pubsub_gave_up_on(deployed: dict[str, Path], tmp_path: Path) -> None:
    """A work item the trades subscription failed to deliver ten times: Pub/Sub forwards it with its own
    attributes and the dead-letter ones; the sink records it as MAX_ATTEMPTS with that count."""
    item = {
        "run_id": "trades-20240105-1a2b3c4d", "loop": "trades", "ds": DS, "doc_id": "pos-1", "schema_version": "1",
        "published_at": "2024-01-05T21:30:00Z",
    }
    attributes = {
        **{k: item[k] for k in ("run_id", "loop", "ds", "doc_id", "schema_version")},
        "CloudPubSubDeadLetterSourceDeliveryCount": "10",
        "CloudPubSubDeadLetterSourceSubscription": "projects/goldthread-local/subscriptions/goldthread-trades-sub",
    }
    with serve(deployed, "dead_letter_sink", tmp_path) as url:
        status, body = post(url + push_path("goldthread-dead-letters"), push_body(item, attributes))
    assert status == 200, body
    rows = warehouse_rows(tmp_path, "SELECT loop, doc_id, reason_code, delivery_attempts FROM dead_letters")
    assert rows == [("trades", "pos-1", "MAX_ATTEMPTS", 10)]


@pytest.mark.parametrize(
    ("target", "request_body", "keys"),
    [
        ("replay", {"dry_run": True}, {"would_pass", "still_failing", "not_replayable", "run"}),
        ("patch_fees", {"ds": DS, "dry_run": True}, {"changes", "unchanged", "unfinalised", "days", "run"}),
        ("patch_prices", {"dry_run": True}, {"changes", "unfilled", "fact_trades_corrected", "run"}),
    ],
)
def test_the_operator_functions_answer_a_dry_run(
    deployed: dict[str, Path], tmp_path: Path, target: str, request_body: dict[str, Any], keys: set[str]
) -> None:
    with serve(deployed, target, tmp_path) as url:
        status, body = post(url, request_body)
    assert status == 200, body
    answer = json.loads(body)
    assert set(answer) == keys
    assert answer["run"] is None, "a dry run starts no run"


def test_the_canary_runs_and_names_the_hop_a_lone_process_cannot_cross(
    deployed: dict[str, Path], tmp_path: Path
) -> None:
    """The canary writes its signal and position and publishes its work item; on the embedded stack the bus
    lives in the canary's own process, so no subscriber receives the item and the canary answers 500 naming
    the ``delivery`` hop, after the hops before it succeeded. That is its real answer for this deployment."""
    with serve(deployed, "canary", tmp_path) as url:
        status, body = post(url, {"timeout_seconds": 3})
    assert status == 500, body
    answer = json.loads(body)
    assert answer["ok"] is False and answer["broken_hop"] == "delivery"
    assert {"signal_write", "position_write", "dispatch"} <= set(answer["hop_ms"])
