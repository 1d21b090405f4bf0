"""The dashboard's pure parts: how entries look, paging, the buttons a status allows, chart geometry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handoff.analytics.schemas import ActivityBucket
from handoff.sessions.models import ArtifactAction, EntryType, SessionStatus
from handoff.sessions.schemas import ActionEntry, Artifact, SessionRead, TypedEntry
from handoff.ui import charts, views

AT = datetime(2026, 12, 1, 14, 3, tzinfo=UTC)


def test_every_entry_kind_has_an_icon_and_a_word() -> None:
    typed = [TypedEntry(id=f"e{t}", message="m", type=t, data={}, timestamp=AT) for t in EntryType]
    items = [views.timeline_item(entry) for entry in typed]

    assert {item.kind.label for item in items} == {"Info", "Warning", "Error", "Success", "Checkpoint", "Decision"}
    assert all(item.kind.icon for item in items)
    assert {item.kind.name for item in items if item.kind.notable} == {"checkpoint", "decision", "error"}
    assert all(item.data is None for item in items)  # empty data is nothing to expand

    action = views.timeline_item(ActionEntry(id="a", action="edit_file", details={"path": "x"}, timestamp=AT))
    assert (action.kind.label, action.text, action.data) == ("Action", "edit_file", {"path": "x"})


def test_pager_counts_pages_and_neighbours() -> None:
    assert views.Pager(page=1, size=50, total=0).pages == 1
    middle = views.Pager(page=2, size=50, total=120)
    assert (middle.pages, middle.offset, middle.first_shown, middle.last_shown) == (3, 50, 51, 100)
    assert (middle.previous, middle.next) == (1, 3)
    last = views.Pager(page=3, size=50, total=120)
    assert (last.last_shown, last.next) == (120, None)
    assert views.Pager(page=20_000, size=50, total=1_000_000).offset == 999_950


def test_page_numbers_from_the_query_are_positive() -> None:
    assert [views.page_number(v) for v in (None, "", "3", "0", "-4", "x")] == [1, 1, 3, 1, 1, 1]


def test_buttons_follow_the_lifecycle() -> None:
    def operations(status: SessionStatus) -> list[str]:
        return [button.operation for button in views.lifecycle_buttons(status)]

    assert operations(SessionStatus.ACTIVE) == ["pause", "complete", "fail"]
    assert operations(SessionStatus.PAUSED) == ["resume", "complete", "fail"]
    assert operations(SessionStatus.COMPLETED) == []
    assert operations(SessionStatus.FAILED) == []


def test_artifacts_are_grouped_by_action_in_recorded_order() -> None:
    def artifact(path: str, action: ArtifactAction) -> Artifact:
        return Artifact(id=path, path=path, action=action, metadata=None, timestamp=AT)

    created = [artifact("a", ArtifactAction.CREATED)]
    modified = [artifact("b", ArtifactAction.MODIFIED), artifact("c", ArtifactAction.MODIFIED)]
    groups = views.artifact_groups(
        [
            (ArtifactAction.CREATED, (created, 1)),
            (ArtifactAction.MODIFIED, (modified, 7)),
            (ArtifactAction.DELETED, ([], 0)),
        ]
    )

    assert [(g.action.value, [a.path for a in g.artifacts], g.total) for g in groups] == [
        ("created", ["a"], 1),
        ("modified", ["b", "c"], 7),
    ]


def test_formatting() -> None:
    assert views.when(AT) == "2026-12-01 14:03 UTC"
    assert views.ago(AT - timedelta(minutes=5), AT) == "5 min ago"
    assert views.ago(AT - timedelta(days=2), AT) == "2 d ago"
    assert views.query_string({"status": "paused", "plan": None}, cursor="abc") == "?status=paused&cursor=abc"
    assert views.query_string({"status": ""}) == "?"


def test_activity_buckets_are_filled_with_zeros_over_the_window() -> None:
    day = timedelta(days=1)
    midnight = AT.replace(hour=0, minute=0)
    items = [ActivityBucket(bucket_start=midnight + day, started=4, completed=1, failed=0)]

    buckets = charts.filled_buckets(items, step=day, since=AT, until=midnight + 3 * day, now=AT)  # until: exclusive

    assert [(b.bucket_start.day, b.started) for b in buckets] == [(1, 0), (2, 4), (3, 0)]
    assert charts.filled_buckets([], step=day, since=None, until=None, now=AT) == []
    many = charts.filled_buckets([], step=day, since=AT - 1000 * day, until=None, now=AT)
    assert len(many) == charts.MAX_COLUMNS
    assert many[-1].bucket_start == AT.replace(hour=0, minute=0)


def test_column_chart_scales_to_the_peak_and_keeps_zeros_visible() -> None:
    points = [(AT + timedelta(days=n), value) for n, value in enumerate([0, 5, 10])]

    chart = charts.column_chart("started", points, hourly=False, height=170)

    assert (chart.total, chart.peak, chart.first, chart.last) == (15, 10, "2026-12-01", "2026-12-03")
    heights = [column.height for column in chart.columns]
    assert heights[0] == 1.0  # a hairline for a zero
    assert heights[2] == 2 * heights[1]
    assert [column.label for column in chart.columns][1] == "2026-12-02: 5"
    assert chart.columns[2].x + chart.columns[2].width <= 100
    assert chart.labelled


def test_bar_list_rows_carry_their_figures() -> None:
    chart = charts.bar_list([("coder", 0.5, "50 %"), ("reviewer", 1.0, "100 %")], scale=1.0)

    assert [(row.label, row.text) for row in chart.rows] == [("coder", "50 %"), ("reviewer", "100 %")]
    assert chart.rows[1].width == 2 * chart.rows[0].width
    assert chart.rows[1].y > chart.rows[0].y


def test_the_live_edge_is_the_page_with_the_newest_entries() -> None:
    three = {n: views.Pager(page=n, size=50, total=120) for n in (1, 2, 3)}
    assert [views.live_edge(three[n], "desc") for n in (1, 2, 3)] == [True, False, False]
    assert [views.live_edge(three[n], "asc") for n in (1, 2, 3)] == [False, False, True]
    assert views.live_edge(views.Pager(page=1, size=50, total=0), "asc")  # an empty log is its own edge


def test_a_live_row_matches_the_filters_as_the_list_does() -> None:
    session = SessionRead.model_validate(
        {
            "session_id": "sess_a", "external_id": "ext-1", "workspace_id": "ws", "agent_api_key_id": None,
            "plan": "p", "agent_type": "coder", "status": "active", "context_summary": None, "handoff_notes": None,
            "final_summary": None, "started_at": AT, "last_active_at": AT, "ended_at": None, "created_at": AT,
            "updated_at": AT, "duration": "Unknown", "duration_minutes": None, "action_count": 0,
            "artifact_count": 0, "checkpoint_count": 0, "error_count": 0,
        }
    )  # fmt: skip
    none = {"status": None, "agent_type": None, "plan": None, "external_id": None}
    assert views.session_matches(session, none)
    assert views.session_matches(session, {**none, "status": "active", "agent_type": "coder", "external_id": "ext-1"})
    assert not views.session_matches(session, {**none, "status": "paused"})
    assert not views.session_matches(session, {**none, "plan": "other"})
    assert not views.session_matches(session, {**none, "agent_type": "code"})  # exact, like the query


def test_a_lease_counts_down_in_words() -> None:
    assert views.lease_left(AT + timedelta(seconds=299.2), AT) == "5 min 0 s left"
    assert views.lease_left(AT + timedelta(seconds=61), AT) == "1 min 1 s left"
    assert views.lease_left(AT + timedelta(seconds=9), AT) == "9 s left"
    assert views.lease_left(AT + timedelta(hours=2, minutes=3), AT) == "2 h 3 min left"
    assert views.lease_left(AT, AT) == views.lease_left(AT - timedelta(seconds=5), AT) == "lease expired"
