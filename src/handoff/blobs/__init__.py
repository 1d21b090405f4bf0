"""Blobs: a session's binary content (a file's bytes, a screenshot, a large tool output, a serialized checkpoint).

Stored in GridFS in the service's own database, streamed both ways with a few chunks in memory. ``models`` declares
the GridFS collections and their indexes, ``storage`` writes and reads chunks, ``upload`` receives a stream into a
new file, ``delivery`` decides ranges and response headers (pure), ``reservation`` holds an upload's bytes in its
session while they arrive, ``service`` holds the rules (open sessions, limits, the session byte cap, tenancy,
deletes), ``controller`` the routes.
"""
