"""Configuration from environment variables: which adapter backs each port, names, and knobs.

Nothing here holds a credential: Google clients use Application Default Credentials and the Alpaca
adapter reads ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY`` itself. Choosing the production stack is
configuration only::

    GOLDTHREAD_HOT=firestore GOLDTHREAD_BUS=pubsub GOLDTHREAD_WAREHOUSE=bigquery GOLDTHREAD_BROKER=alpaca
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

from goldthread.errors import ConfigError
from goldthread.log_files import FileTarget
from goldthread.models.work_items import Loop

_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,62}$")


def _name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ConfigError(f"{what} {value!r} must be lowercase letters, digits, '-' or '_'")
    return value


@dataclass(frozen=True)
class Settings:
    """Every setting goldthread reads, with the embedded stack as the default."""

    home: Path = Path(".goldthread")
    hot: str = "sqlite"
    bus: str = "local"
    warehouse: str = "duckdb"
    broker: str = "sim"
    market_data: str = "synthetic"
    project: str = "goldthread-local"
    dataset: str = "goldthread"
    topic_prefix: str = "goldthread"
    git_hash: str = "unknown"
    max_delivery_attempts: int = 5
    run_timeout: dt.timedelta = dt.timedelta(hours=1)
    validity_window: dt.timedelta = dt.timedelta(days=7)
    expiry_lookahead: dt.timedelta = dt.timedelta(hours=24)
    moonshot_threshold_pct: str = "10"
    max_signal_lifetime: dt.timedelta = dt.timedelta(days=31)
    bars_file: Path | None = None
    fill_time_tolerance: dt.timedelta = dt.timedelta(seconds=300)
    """How much earlier than the bot's ``opened_at``/``closed_at`` the broker may report the fill (clocks
    differ; the bot stamps after the order returns) before Loop A calls it a mismatch."""
    price_tolerance_bps: Decimal = Decimal(50)
    """Bot-versus-broker fill price discrepancy (basis points) beyond which a trade row is flagged."""
    sweep_every_days: int = 0
    """How often a dispatch also sweeps the whole collection for due records outside its day (late writes,
    unreadable times, days whose run never happened): every ``ds`` whose ordinal is a multiple of it. 0 means
    the default of the hot store: 1 (every run) on SQLite, where reads are free; 7 on Firestore."""
    warehouse_wait: dt.timedelta = dt.timedelta(minutes=10)
    """How long a local command waits for the embedded warehouse while another process holds it."""
    retry_min_backoff: dt.timedelta = dt.timedelta(seconds=10)
    """The local bus's first redelivery delay after a transient failure (Pub/Sub retry policy minimum)."""
    retry_max_backoff: dt.timedelta = dt.timedelta(seconds=600)
    """Its longest redelivery delay (Pub/Sub retry policy maximum); Terraform sets the same on subscriptions."""
    lease_timeout: dt.timedelta = dt.timedelta(seconds=300)
    """How long a dispatch lease lives without a heartbeat before another dispatch of the same job and day
    takes it over (``GOLDTHREAD_LEASE_TIMEOUT_SECONDS``); a local holder whose process is gone is taken over
    at once."""
    log_max_bytes: int = 10 * 1024 * 1024
    """Size past which ``<home>/logs/goldthread.jsonl`` is rolled over (``GOLDTHREAD_LOG_MAX_BYTES``, 10 MiB)."""
    log_backups: int = 5
    """How many rolled-over log files are kept (``GOLDTHREAD_LOG_BACKUPS``): ``goldthread.jsonl.1`` .. ``.5``."""
    read_only: bool = False
    """Open the embedded stores read-only and create nothing (set by the command line for a command that only
    reads, on a home it cannot write); the cloud backends ignore it."""

    def topic(self, loop: Loop | str) -> str:
        """Topic carrying the work items of ``loop``."""
        value = loop.value if isinstance(loop, Loop) else loop
        return f"{self.topic_prefix}-{value.replace('_', '-')}"

    @property
    def dead_letter_topic(self) -> str:
        """Topic that receives every dead-lettered work item."""
        return f"{self.topic_prefix}-dead-letters"

    def subscription(self, loop: Loop | str) -> str:
        """Subscription that triggers the loop's subscriber function."""
        return f"{self.topic(loop)}-sub"

    @property
    def hot_path(self) -> Path:
        """SQLite file of the embedded hot store."""
        return self.home / "hot.sqlite"

    @property
    def warehouse_path(self) -> Path:
        """DuckDB file of the embedded warehouse."""
        return self.home / "warehouse.duckdb"

    @property
    def broker_path(self) -> Path:
        """SQLite file of the simulated broker's ledger."""
        return self.home / "broker.sqlite"

    def sweeps_on(self, ds: dt.date) -> bool:
        """Whether the dispatch for ``ds`` sweeps the whole collection (``sweep_every_days``)."""
        every = self.sweep_every_days or (1 if self.hot == "sqlite" else 7)
        return ds.toordinal() % every == 0

    @property
    def log_dir(self) -> Path:
        """Where a local command writes its JSON log lines (``goldthread logs --run ID`` reads them)."""
        return self.home / "logs"

    @property
    def log_target(self) -> FileTarget:
        """The rotated log files of this home, as ``goldthread.logs.configure`` takes them."""
        return FileTarget(self.log_dir, self.log_max_bytes, self.log_backups)

    def with_(self, **changes: object) -> Settings:
        """A copy with some settings changed (tests tune one setting of a running context this way)."""
        return replace(self, **changes)  # type: ignore[arg-type]


_PACKAGE_DIR = Path(__file__).resolve().parent
_GIT_TIMEOUT_SECONDS = 2.0
_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _git(directory: Path, *args: str) -> str | None:
    """Output of one git command run in ``directory``, or None if git is missing, slow or fails."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=_GIT_TIMEOUT_SECONDS,
            check=False, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def resolve_git_hash(package_dir: Path = _PACKAGE_DIR) -> str:
    """What a run records as ``git_hash`` when ``GOLDTHREAD_GIT_HASH`` is unset, worked out once per process.

    The commit checked out in the git repository that contains the package (``git rev-parse HEAD``, only if
    the package's ``__init__.py`` is tracked there, so a virtualenv inside some other checkout does not lend
    its commit; each git call has a 2 s timeout and any failure is quiet); else the installed distribution's
    version (``goldthread-0.1.0``); ``unknown`` only if neither exists."""
    if _git(package_dir, "ls-files", "--error-unmatch", "__init__.py") is not None:
        commit = _git(package_dir, "rev-parse", "HEAD")
        if commit and _COMMIT.match(commit):
            return commit
    try:
        return f"goldthread-{importlib.metadata.version('goldthread')}"[:64]
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _env(env: Mapping[str, str], key: str, default: str) -> str:
    return env.get(f"GOLDTHREAD_{key}", default)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``GOLDTHREAD_*`` environment variables (see README "Configuration")."""
    env = os.environ if env is None else env
    d = Settings()
    try:
        attempts = int(_env(env, "MAX_DELIVERY_ATTEMPTS", str(d.max_delivery_attempts)))
        timeout = float(_env(env, "RUN_TIMEOUT_MINUTES", "60"))
        window = float(_env(env, "VALIDITY_WINDOW_DAYS", "7"))
        lookahead = float(_env(env, "EXPIRY_LOOKAHEAD_HOURS", "24"))
        warehouse_wait = float(_env(env, "WAREHOUSE_WAIT_SECONDS", "600"))
        min_backoff = float(_env(env, "RETRY_MIN_BACKOFF_SECONDS", "10"))
        max_backoff = float(_env(env, "RETRY_MAX_BACKOFF_SECONDS", "600"))
        lifetime = float(_env(env, "MAX_SIGNAL_LIFETIME_DAYS", "31"))
        fill_tolerance = float(_env(env, "FILL_TIME_TOLERANCE_SECONDS", "300"))
        price_tolerance = Decimal(_env(env, "PRICE_TOLERANCE_BPS", "50"))
    except (ValueError, InvalidOperation) as exc:
        raise ConfigError(f"a numeric GOLDTHREAD_* setting is not a number: {exc}") from exc
    if not 0 <= fill_tolerance < 86400:
        raise ConfigError("GOLDTHREAD_FILL_TIME_TOLERANCE_SECONDS must be between 0 and 86400")
    if not price_tolerance.is_finite() or price_tolerance < 0:
        raise ConfigError("GOLDTHREAD_PRICE_TOLERANCE_BPS must be a number >= 0")
    if not 5 <= attempts <= 100:
        raise ConfigError("GOLDTHREAD_MAX_DELIVERY_ATTEMPTS must be between 5 and 100 (Pub/Sub's range)")
    if not 0 <= min_backoff <= max_backoff <= 600 or warehouse_wait < 0:
        raise ConfigError("GOLDTHREAD_RETRY_MIN_BACKOFF_SECONDS <= GOLDTHREAD_RETRY_MAX_BACKOFF_SECONDS <= 600 "
                          "(Pub/Sub's range) and GOLDTHREAD_WAREHOUSE_WAIT_SECONDS >= 0")
    if not 0 < lifetime <= 3660:  # NaN fails too
        raise ConfigError("GOLDTHREAD_MAX_SIGNAL_LIFETIME_DAYS must be a number of days above 0 and at most 3660")
    bars = _env(env, "BARS_FILE", "")
    rotation = _log_rotation(env)
    return Settings(
        home=Path(_env(env, "HOME", str(d.home))),
        hot=_env(env, "HOT", d.hot),
        bus=_env(env, "BUS", d.bus),
        warehouse=_env(env, "WAREHOUSE", d.warehouse),
        broker=_env(env, "BROKER", d.broker),
        market_data=_env(env, "MARKET_DATA", d.market_data),
        project=env.get("GOOGLE_CLOUD_PROJECT", _env(env, "PROJECT", d.project)),
        dataset=_name(_env(env, "DATASET", d.dataset), "dataset"),
        topic_prefix=_name(_env(env, "TOPIC_PREFIX", d.topic_prefix), "topic prefix"),
        git_hash=(_env(env, "GIT_HASH", "") or resolve_git_hash())[:64],
        max_delivery_attempts=attempts,
        run_timeout=dt.timedelta(minutes=timeout),
        validity_window=dt.timedelta(days=window),
        expiry_lookahead=dt.timedelta(hours=lookahead),
        moonshot_threshold_pct=_env(env, "MOONSHOT_THRESHOLD_PCT", d.moonshot_threshold_pct),
        max_signal_lifetime=dt.timedelta(days=lifetime),
        bars_file=Path(bars) if bars else None,
        warehouse_wait=dt.timedelta(seconds=warehouse_wait),
        retry_min_backoff=dt.timedelta(seconds=min_backoff),
        retry_max_backoff=dt.timedelta(seconds=max_backoff),
        fill_time_tolerance=dt.timedelta(seconds=fill_tolerance),
        price_tolerance_bps=price_tolerance,
        lease_timeout=_lease_timeout(env),
        sweep_every_days=_sweep_every_days(env),
        log_max_bytes=rotation[0],
        log_backups=rotation[1],
    )


def _sweep_every_days(env: Mapping[str, str]) -> int:
    """``GOLDTHREAD_SWEEP_EVERY_DAYS`` (default: 1 on SQLite, 7 on Firestore): whole days from 1 to 366."""
    text = _env(env, "SWEEP_EVERY_DAYS", "")
    if not text:
        return 0
    try:
        days = int(text)
    except ValueError as exc:
        raise ConfigError(f"GOLDTHREAD_SWEEP_EVERY_DAYS {text!r} is not a whole number of days") from exc
    if not 1 <= days <= 366:
        raise ConfigError("GOLDTHREAD_SWEEP_EVERY_DAYS must be between 1 and 366")
    return days


def _log_rotation(env: Mapping[str, str]) -> tuple[int, int]:
    """``GOLDTHREAD_LOG_MAX_BYTES`` (default 10485760, at least 1024) and ``GOLDTHREAD_LOG_BACKUPS`` (default 5,
    1..1000): the size and count of the rotated log files under ``<home>/logs/``."""
    d = Settings()
    try:
        max_bytes = int(_env(env, "LOG_MAX_BYTES", str(d.log_max_bytes)))
        backups = int(_env(env, "LOG_BACKUPS", str(d.log_backups)))
    except ValueError as exc:
        raise ConfigError(f"GOLDTHREAD_LOG_MAX_BYTES and GOLDTHREAD_LOG_BACKUPS must be whole numbers: {exc}") from exc
    if max_bytes < 1024 or not 1 <= backups <= 1000:
        raise ConfigError("GOLDTHREAD_LOG_MAX_BYTES must be at least 1024 and GOLDTHREAD_LOG_BACKUPS between 1 "
                          "and 1000")
    return max_bytes, backups


def log_target(env: Mapping[str, str] | None = None) -> FileTarget | None:
    """The log files a local command writes to, or None when the settings do not load (the command itself
    then reports the bad setting; its logs go to stderr only)."""
    try:
        return load_settings(env).log_target
    except ConfigError:
        return None


def _lease_timeout(env: Mapping[str, str]) -> dt.timedelta:
    """``GOLDTHREAD_LEASE_TIMEOUT_SECONDS`` (default 300): seconds between 10 and 86400."""
    text = _env(env, "LEASE_TIMEOUT_SECONDS", "300")
    try:
        seconds = float(text)
    except ValueError as exc:
        raise ConfigError(f"GOLDTHREAD_LEASE_TIMEOUT_SECONDS {text!r} is not a number") from exc
    if not 10 <= seconds <= 86400:  # NaN fails too
        raise ConfigError("GOLDTHREAD_LEASE_TIMEOUT_SECONDS must be between 10 and 86400")
    return dt.timedelta(seconds=seconds)
