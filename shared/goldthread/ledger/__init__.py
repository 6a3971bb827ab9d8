"""The ledger: goldthread's bookkeeping in the hot store, apart from the bot's documents.

``marks`` records what goldthread did with each bot record (loading, archived, dead-lettered) in its own
``ledger_marks`` collection, so a record is found due whatever the bot's document carries or lacks.
"""
