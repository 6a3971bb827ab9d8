"""Adapters: one per port and backend. Only an adapter imports a vendor SDK."""
