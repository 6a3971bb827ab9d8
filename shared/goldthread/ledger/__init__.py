"""The ledger: goldthread's bookkeeping in the hot store, apart from the bot's documents.

* ``marks``: what goldthread did with each bot record (loading, archived, dead-lettered, and the digest of the
  document it marked) in its own ``ledger_marks`` collection, so a record is found due whatever the bot's
  document carries or lacks;
* ``runs``: each run of a loop, patch or replay in ``job_metadata``: its lease (by heartbeat), its counters
  (returned by the transaction that changes them, ``HotStore.record_outcomes``), its status, and ``running``,
  the one context manager every job records its run with.
"""
