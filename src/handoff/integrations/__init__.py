"""Framework adapters: each framework's session or checkpoint interface, stored in handoff.

One module per framework, each behind its own extra so the core install pulls none of them
(``pip install 'handoff[langgraph]'``). Every adapter talks to the service only through :mod:`handoff.client`,
so retries and idempotency are the client's, and maps the framework's own id to a session's ``external_id``.
"""
