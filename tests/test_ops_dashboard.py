"""``docs/grafana-dashboard.json`` imports as is: a Grafana dashboard model with its Prometheus data source as an
import input, panels that do not overlap, and queries that name only metrics the service exports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from handoff import metrics

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def exported_sample_names() -> set[str]:
    """Every series name the service's families give (a labelled family with no sample yet still counts)."""
    families = text_string_to_metric_families(metrics.exposition(None).decode())
    return {
        family.name + suffix
        for family in families
        if family.name.startswith("handoff_")
        for suffix in SAMPLE_SUFFIXES[family.type]
    }


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_it_is_a_dashboard_model_with_its_data_source_as_an_import_input() -> None:
    model = dashboard()
    assert {"title", "uid", "panels", "schemaVersion", "time"} <= set(model)
    assert "id" not in model  # an id would tie it to the Grafana it was exported from
    assert [(item["name"], item["type"], item["pluginId"]) for item in model["__inputs"]] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")
    ]
    ids = [panel["id"] for panel in model["panels"]]
    assert len(ids) == len(set(ids))
    for panel in model["panels"]:
        assert panel["datasource"] == DATASOURCE
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
            assert target["refId"]


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells


def test_every_query_names_metrics_the_service_exports_and_plots_the_main_ones() -> None:
    exported = exported_sample_names()
    named = {
        name
        for panel in dashboard()["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bhandoff_[a-z_]+", target["expr"])
    }
    assert named <= exported, named - exported
    families = {name.removesuffix("_total").removesuffix("_bucket") for name in named}
    assert families >= {
        "handoff_http_requests",
        "handoff_http_request_duration_seconds",
        "handoff_entries_appended",
        "handoff_page_seals",
        "handoff_blob_bytes",
        "handoff_events_streamed",
        "handoff_event_subscribers",
        "handoff_claims",
        "handoff_mongodb_errors",
        "handoff_api_key_cache",
    }
