"""Agent sessions: the work log, artifacts, context, handoff and replay."""
