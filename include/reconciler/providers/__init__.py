"""Adapters that implement the Provider port: a simulated fleet and AWS (imported lazily)."""
