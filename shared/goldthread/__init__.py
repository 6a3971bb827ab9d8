"""goldthread: keeps an algorithmic trading system's data honest from signal to chart.

Signal -> hot storage (Firestore) -> cold storage (BigQuery, partitioned by ``ds``) -> BI, validated in
flight by SchemaGuardian, with nothing silently lost.

Layers, top first; a module imports only from those below it (README "Layers"; ``.importlinter`` is the
contract ``make lint`` and ``tests/test_layers.py`` check): entry points and tools (``cli``, ``demo``,
``entrypoints``, ``sim``, ``schema``, ``report``, ``pipeline.local_runtime``) > BI applications > ``patches`` >
the pipeline (dispatcher, subscriber, replay, dead letters, runs, revisions) > ``loops`` >
``pipeline.context`` > ``bi.marts`` > ``adapters`` > ``analytics``, ``writer`` > ``ports``, ``config`` >
``models`` > ``errors``, ``logs``. The context reaches adapters only through ``adapters.registry``, which
imports the configured backend by name, so a BigQuery function never imports DuckDB.
"""

__version__ = "0.1.0"
