"""The event-driven pipeline: dispatch, subscribe, dead-letter, replay, and run bookkeeping."""
