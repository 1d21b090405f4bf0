"""Analytics: workspace-scoped aggregation pipelines over sessions (summary, agents, activity, artifacts, errors,
stale sessions, waiting handoffs, replay lineage)."""
