"""Log files under ``<home>/logs/``: one rotated JSON-lines file that several processes share safely.

A local command writes every goldthread record at INFO and above to ``<home>/logs/goldthread.jsonl`` (the same
JSON objects as on stderr, one a line), rotated by size into ``goldthread.jsonl.1`` .. ``.N`` (``.1`` the
newest backup). Two commands on one home may run at once, and a plain ``RotatingFileHandler`` breaks then: each
process rolls the file over on its own, renaming the file another is still writing, so lines land in a backup
out of order or a backup is overwritten. Here every write, and every rollover, happens under an exclusive
``flock`` on ``goldthread.jsonl.lock``, and a process first reopens the file if another renamed it since. So each
line is whole, none is lost to a rollover, and the sizes hold. Readers (``goldthread logs``) open every file
under the same lock and then read them oldest first.

In a Cloud Function (``K_SERVICE`` or ``FUNCTION_TARGET`` set) nothing is written to files: Cloud Logging
collects the process's output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one process per home, then
    fcntl = None  # type: ignore[assignment]

LOG_FILE_NAME = "goldthread.jsonl"
"""The current log file's name in ``<home>/logs/``; backups add ``.1`` (newest) .. ``.N``."""
FILE_LEVEL = logging.INFO
"""The log files' level: INFO even when stderr shows only errors, so the file holds what a run did."""
CLOUD_ENV = ("K_SERVICE", "FUNCTION_TARGET")


def in_cloud(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is a Cloud Function (Cloud Run sets ``K_SERVICE``, functions-framework
    ``FUNCTION_TARGET``): then logs go to Cloud Logging only, never to files."""
    env = os.environ if env is None else env
    return any(env.get(name) for name in CLOUD_ENV)


@dataclass(frozen=True)
class FileTarget:
    """Where and how big the log files are: ``directory`` (``<home>/logs``), rolled over past ``max_bytes``,
    keeping ``backups`` old files."""

    directory: Path
    max_bytes: int
    backups: int

    @property
    def path(self) -> Path:
        """The current log file."""
        return self.directory / LOG_FILE_NAME


@contextlib.contextmanager
def _flock(lock_path: Path, exclusive: bool) -> Iterator[None]:
    """Hold an advisory lock on ``lock_path`` (created if missing); without one (no fcntl, or a read-only
    directory for a reader) go on unlocked."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if exclusive:
            raise
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A ``RotatingFileHandler`` that several processes can share: writes and rollovers under a ``flock``,
    reopening the file when another process rolled it over. The directory is created at the first record (a
    command that logs nothing leaves no trace); a home where it cannot write (read-only, missing) costs the
    record its file copy, quietly, and the next record tries again."""

    def __init__(self, target: FileTarget) -> None:
        super().__init__(target.path, mode="a", maxBytes=target.max_bytes, backupCount=target.backups,
                         encoding="utf-8", delay=True)
        self.target = target
        self.lock_path = target.directory / f"{LOG_FILE_NAME}.lock"
        self.last_error: OSError | None = None
        """Why the last record could not be written (None once one was)."""
        self._dir_ready = False
        self.setLevel(FILE_LEVEL)

    def _follow_rollover(self) -> None:
        """Drop the open file if another process renamed it (rolled over) since we opened it."""
        if self.stream is None:
            return
        try:
            current = os.stat(self.baseFilename)
            mine = os.fstat(self.stream.fileno())
            moved = (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev)
        except OSError:
            moved = True
        if moved:
            self._drop_stream()

    def _drop_stream(self) -> None:
        stream, self.stream = self.stream, None  # type: ignore[assignment]
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record under the lock, rolling over first if it would pass ``max_bytes``."""
        try:
            if not self._dir_ready:  # never the home itself: a missing home is the command's to report
                self.target.directory.mkdir(exist_ok=True)
                self._dir_ready = True
            with _flock(self.lock_path, exclusive=True):
                self._follow_rollover()
                if self.shouldRollover(record):
                    self.doRollover()
                logging.FileHandler.emit(self, record)
                if self.stream is not None:
                    self.stream.flush()
            self.last_error = None
        except OSError as exc:  # unwritable home: the record still went to stderr
            self.last_error = exc
            self._dir_ready = False
            self._drop_stream()
        except Exception:  # logging's own convention: report, never raise into the caller
            self.handleError(record)


def log_paths(directory: Path) -> list[Path]:
    """The log files in ``directory``, oldest first (``.N`` .. ``.1``, then the current one)."""
    backups = []
    for path in directory.glob(f"{LOG_FILE_NAME}.*"):
        suffix = path.name[len(LOG_FILE_NAME) + 1:]
        if suffix.isdigit():
            backups.append((int(suffix), path))
    ordered = [path for _, path in sorted(backups, reverse=True)]
    current = directory / LOG_FILE_NAME
    return ordered + ([current] if current.exists() else [])


def read_lines(directory: Path) -> Iterator[str]:
    """Every line of every log file, oldest first. The files are opened together under the writers' lock, so a
    rollover in between neither hides nor repeats a line."""
    if not directory.is_dir():
        return
    handles: list[IO[str]] = []
    try:
        with _flock(directory / f"{LOG_FILE_NAME}.lock", exclusive=False):
            for path in log_paths(directory):
                with contextlib.suppress(OSError):
                    handles.append(path.open(encoding="utf-8", errors="replace"))
        for handle in handles:
            for line in handle:
                if line.strip():
                    yield line.rstrip("\n")
    finally:
        for handle in handles:
            handle.close()


def is_of_run(payload: Mapping[str, Any], run_id: str) -> bool:
    """Whether a log record belongs to run ``run_id``: its ``run_id`` label, or ``run_ids`` for a record about
    a batch of several runs."""
    if str(payload.get("run_id", "")) == run_id:
        return True
    many = payload.get("run_ids")
    return isinstance(many, list) and run_id in (str(r) for r in many)


def run_lines(directory: Path, run_id: str) -> list[str]:
    """The raw JSON lines of one run, oldest first, from the current file and every backup. A line that is not
    a JSON object (a torn line from a crash) is skipped."""
    found = []
    for line in read_lines(directory):
        try:
            payload = json.loads(line)
        except ValueError:
            continue
        if isinstance(payload, dict) and is_of_run(payload, run_id):
            found.append(line)
    return found


_SHOWN_FIRST = ("time", "severity", "logger", "message")


def human_line(line: str) -> str:
    """One JSON log line for a person: time, severity, logger, message, then the other labels as key=value."""
    try:
        payload = json.loads(line)
    except ValueError:
        return line
    if not isinstance(payload, dict):
        return line
    head = " ".join(str(payload.get(key, "")) for key in _SHOWN_FIRST if key != "message")
    labels = " ".join(f"{k}={v}" for k, v in payload.items() if k not in _SHOWN_FIRST and k != "exception")
    text = f"{head}  {payload.get('message', '')}" + (f"  [{labels}]" if labels else "")
    if payload.get("exception"):
        text += "\n" + str(payload["exception"])
    return text
