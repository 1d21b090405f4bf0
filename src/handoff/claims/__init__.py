"""Handoff claims: a queue of waiting handoffs that agents take exactly once, under a lease (api.md)."""
