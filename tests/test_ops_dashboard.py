"""``docs/grafana-dashboard.json`` imports as is: a Grafana dashboard model with its Prometheus data source as an
import input, panels that do not overlap, and queries that name only metrics the service exports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

from prometheus_client import Counter, Gauge, Histogram
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


def family_labels() -> dict[str, set[str]]:
    """Each family's label names, as its instrument in ``handoff.metrics`` declares them (histograms add ``le``)."""
    found: dict[str, set[str]] = {}
    for instrument in vars(metrics).values():
        if isinstance(instrument, Counter | Gauge | Histogram):
            extra = {"le"} if isinstance(instrument, Histogram) else set()
            found[instrument._name] = set(instrument._labelnames) | extra
    return found


#: The closed label sets of ``handoff.metrics``: a query matching a value outside them plots nothing, for ever.
CLOSED_LABELS = {
    ("handoff_claims", "outcome"): metrics.ClaimOutcome,
    ("handoff_events_streamed", "type"): metrics.EventType,
    ("handoff_api_key_cache", "result"): metrics.KeyCacheResult,
    ("handoff_blob_bytes", "direction"): metrics.BlobDirection,
    ("handoff_entries_appended", "kind"): metrics.LogKind,
    ("handoff_page_seals", "kind"): metrics.LogKind,
}
_FAMILY = re.compile(r"\b(handoff_[a-z_]+?)(?:_total|_bucket|_count|_sum)?\b(?:\{([^}]*)\})?")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r'([a-z_]+)\s*(=~|!=|!~|=)\s*"([^"]*)"')


def test_every_query_groups_and_filters_by_labels_its_metrics_have() -> None:
    """``sum by (outcome) (rate(handoff_claims_total[...]))`` needs ``outcome`` on the family (a renamed label plots
    one unlabelled line), and ``{result="hit"}`` a value the service records."""
    labels = family_labels()
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            used = _FAMILY.findall(expr)
            families = {family for family, _ in used}
            assert families <= set(labels), (panel["title"], families - set(labels))
            known = set().union(*(labels[family] for family in families))
            grouped = {name.strip() for group in _GROUPING.findall(expr) for name in group.split(",") if name.strip()}
            assert grouped <= known, (panel["title"], grouped - known)
            for family, selector in used:
                for name, operator, wanted in _MATCHER.findall(selector):
                    assert name in labels[family], (panel["title"], family, name)
                    closed = CLOSED_LABELS.get((family, name))
                    if operator == "=" and closed is not None:
                        assert wanted in get_args(closed), (panel["title"], family, name, wanted)


def test_the_claims_and_events_panels_plot_every_outcome_and_type() -> None:
    """The claims panel splits by ``outcome`` and the events panel by ``type`` with no filter, so each outcome
    (claimed, empty, released, expired, completed) and each event type gets its own line."""
    queries = {target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]}
    assert "sum by (outcome) (rate(handoff_claims_total[$__rate_interval]))" in queries
    assert "sum by (type) (rate(handoff_events_streamed_total[$__rate_interval]))" in queries
    assert "sum(handoff_event_subscribers)" in queries
