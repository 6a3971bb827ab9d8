"""Refusals before anything is opened: a home that cannot serve the command, a day or range that cannot be run.

``prepare_home`` decides how a command may use ``GOLDTHREAD_HOME`` (only when an embedded store is configured):

* a path that is a file, or whose parent directory does not exist, is refused (``ConfigError``, exit 2): a typo
  must not grow a directory tree, nor end in a traceback;
* a home this process cannot write (a read-only mount, another user's files) still serves the commands that
  only read: their stores are opened read-only (``Settings.read_only``) and nothing is created; a writing
  command is refused naming the home;
* a missing home is created for a writing command, and left uncreated by a reading one (which reads it empty).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from goldthread.config import Settings
from goldthread.errors import ConfigError, FutureDayError, RefusedError

STORE_FILES = ("hot.sqlite", "warehouse.duckdb", "broker.sqlite")


def uses_home(settings: Settings) -> bool:
    """True when a configured backend keeps its files in the home (SQLite, DuckDB, the simulated broker)."""
    return settings.hot == "sqlite" or settings.warehouse == "duckdb" or settings.broker == "sim"


def home_is_writable(home: Path) -> bool:
    """Whether this process can create a file in ``home`` and write each store file already there (tried, not
    judged from permission bits, which root ignores and a read-only mount overrides)."""
    try:
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError:
        return False
    return all(os.access(home / name, os.W_OK) for name in STORE_FILES if (home / name).exists())


def prepare_home(settings: Settings, reads_only: bool) -> Settings:
    """The settings a command runs with, or ``ConfigError`` saying in one line why the home cannot serve it."""
    if not uses_home(settings):
        return settings
    home = settings.home
    shown = f"GOLDTHREAD_HOME {str(home)!r}"
    if home.exists() and not home.is_dir():
        raise ConfigError(f"{shown} is not a directory; point GOLDTHREAD_HOME at a directory")
    if not home.exists():
        parent = home.absolute().parent
        if not parent.is_dir():
            raise ConfigError(f"{shown}: its parent {str(parent)!r} does not exist; create it first, or point "
                              "GOLDTHREAD_HOME at an existing directory")
        if reads_only:
            return settings.with_(read_only=True)  # nothing stored yet: read it empty, create nothing
        try:
            home.mkdir()
        except OSError as exc:
            raise ConfigError(f"{shown} cannot be created: {exc.strerror or exc}") from None
        return settings
    if home_is_writable(home):
        return settings
    if reads_only:
        return settings.with_(read_only=True)
    raise ConfigError(f"{shown} is not writable; this command writes (the reading commands runs, dead-letters "
                      "list/show, trace, status, hot get and dashboard --out elsewhere still work on it)")


def check_day(job: str, ds: dt.date, today: dt.date) -> None:
    """Refuse a day after today (UTC): no run may record a day that has not begun."""
    if ds > today:
        raise FutureDayError(f"{job}: ds {ds} is in the future (today is {today} UTC); nothing was run")


def check_range(start: dt.date, end: dt.date) -> None:
    """Refuse a range whose end comes before its start."""
    if end < start:
        raise RefusedError(f"--end {end} is before --start {start}; nothing was run (a range runs start..end)")


def not_utf8(argv: Sequence[str]) -> str | None:
    """The first argument holding bytes the shell passed that are not UTF-8 (Python keeps each as a lone
    surrogate), shown with those bytes escaped; None when every argument is text."""
    for arg in argv:
        if any("\ud800" <= ch <= "\udfff" for ch in arg):
            return arg.encode("utf-8", "backslashreplace").decode("ascii", "replace")
    return None


def arg_date(text: str) -> dt.date:
    """Argument type: a YYYY-MM-DD day."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from exc


def arg_count(text: str) -> int:
    """Argument type: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def arg_seconds(text: str) -> float:
    """Argument type: seconds, above 0 and below a day."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from exc
    if not 0 < value < 86400:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 86400 seconds")
    return value


def arg_port(text: str) -> int:
    """Argument type: a TCP port."""
    value = arg_count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0..65535)")
    return value
