"""goldthread: keeps an algorithmic trading system's data honest from signal to chart.

Signal -> hot storage (Firestore) -> cold storage (BigQuery, partitioned by ``ds``) -> BI, validated in
flight by SchemaGuardian, with nothing silently lost.
"""

__version__ = "0.1.0"
