"""Retention: ended sessions are deleted once they are older than their workspace keeps them.

``service`` finds and deletes them in bounded batches (``handoff prune`` and the background share it);
``lease`` makes one worker at a time do the background work; ``worker`` is that background task.
"""
