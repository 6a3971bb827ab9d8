"""Ports: the small interfaces the pipeline logic talks to. Adapters implement them."""
