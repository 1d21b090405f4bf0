"""Idempotency keys: a retried create or replay answers with what the first one made."""
