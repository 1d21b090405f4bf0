"""Per-key request rate limits, counted across the worker processes of one ``handoff serve``.

``table`` is the shared state (a GCRA token bucket per key in a memory-mapped file, with byte-range locks);
``middleware`` applies it to requests and writes the ``429`` and the ``RateLimit-*`` headers.
"""
