"""The artifacts rollup: per-(workspace, path, start day) and per-(workspace, path, start month) counters that
answer ``GET /v1/analytics/artifacts`` without reading every session document of the window.

An artifact change writes one field more in its own update (``rollup_dirty: true`` on the session); a leased
background pass (``worker.py``) folds the dirty sessions into the day and month documents, one transaction per
batch; the route (``handoff.analytics.service.artifacts``) adds the few dirty sessions' pending change, read live
in the same snapshot, so its answer is exact at every moment. ``docs/benchmarks.md`` ("Analytics") has the
measurements that chose this shape.
"""
