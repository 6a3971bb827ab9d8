"""BI on the Golden Thread: marts (views defined once in GoogleSQL), their metric definitions, the offline
dashboard, the canary that proves the thread is whole, and ``trace`` for one record's journey.

Submodules are imported where used (``goldthread.bi.marts``, ``metrics``, ``runs_sync``, ``dashboard``,
``canary``, ``trace``), so importing the package costs nothing.
"""
