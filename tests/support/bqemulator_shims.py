"""Launch ``bqemulator`` with the two shims it needs on a machine without internet access.

Run as a script (``python tests/support/bqemulator_shims.py start --rest-port P ...``); it patches
bqemulator in this process, then hands the arguments to bqemulator's own command line.

1. **Spatial extension.** At start bqemulator runs ``INSTALL spatial``, which downloads DuckDB's
   spatial extension and fails offline, so the server never starts. The shim makes that load
   best-effort: GEOGRAPHY columns and ``ST_*`` functions then fail, which goldthread never uses.
2. **Upload media type.** ``load_table_from_json`` / ``load_table_from_file`` send the media part of a
   multipart upload as ``*/*``, which bqemulator's whitelist refuses; real BigQuery accepts it. The shim
   adds ``*/*`` to the whitelist so load jobs (used by ``BigQueryWarehouse.upsert_rows``) work.

Set ``BQEMU_ENABLE_FORMAT_EXTENSIONS=false`` as well (the launcher in ``emulators.py`` does): otherwise
bqemulator tries to download the avro extension and takes seconds longer to start.
"""

from __future__ import annotations

import sys
from typing import Any


def apply_shims() -> None:
    """Patch bqemulator in this process: best-effort spatial load, and accept the ``*/*`` media type."""
    from bqemulator.api.routes import upload
    from bqemulator.storage import engine

    def _load_spatial_best_effort(self: Any) -> None:
        try:
            self._connection.execute("LOAD spatial")
        except Exception:
            return

    engine.DuckDBEngine._load_spatial = _load_spatial_best_effort  # type: ignore[method-assign]
    if "*/*" not in upload._PERMITTED_MEDIA_CONTENT_TYPES:
        upload._PERMITTED_MEDIA_CONTENT_TYPES = (*upload._PERMITTED_MEDIA_CONTENT_TYPES, "*/*")  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> None:
    """Apply the shims, then run bqemulator's command line with ``argv``."""
    apply_shims()
    from bqemulator.cli import main as bqemulator_main

    bqemulator_main(args=sys.argv[1:] if argv is None else argv, prog_name="bqemulator")


if __name__ == "__main__":
    main()
