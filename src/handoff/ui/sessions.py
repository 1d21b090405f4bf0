"""The Sessions and Session pages and the session's lifecycle buttons: thin handlers over the domain services.

Each handler reads its query, calls the functions the REST routes call (``sessions.service``/``queries``,
``analytics.service.lineage``, ``plans.service``), and renders; nothing here queries MongoDB itself. The log is
read one page at a time through ``queries.work_log_page`` however long it is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Stream, Template

from handoff.analytics import service as analytics
from handoff.auth import CurrentPrincipal
from handoff.blobs import service as blobs
from handoff.errors import FieldError, Invalid
from handoff.plans import service as plans
from handoff.plans import views as plan_views
from handoff.sessions import queries, service
from handoff.sessions.models import ArtifactAction, EntryType, SessionStatus
from handoff.sessions.queries import Order
from handoff.sessions.schemas import SessionRead
from handoff.streaming import ClosingStream
from handoff.ui import views
from handoff.ui.auth import signed_in
from handoff.ui.render import flash, page

SessionId = FromPath[str]


def choice(value: str | None, field: str, allowed: type[SessionStatus] | type[EntryType]) -> Any:
    """An optional enum from a form: empty means no filter; anything not in the enum is a 422 naming the field."""
    if not value:
        return None
    try:
        return allowed(value)
    except ValueError:
        names = ", ".join(member.value for member in allowed)
        raise Invalid(f"{field} must be one of {names}", errors=[FieldError(field, "unknown value")]) from None


async def artifact_groups(workspace_id: str, session_id: str) -> list[views.ArtifactGroup]:
    """The session page's artifacts: the first of each action, and how many there are (also what its live tail
    re-sends when one is recorded)."""
    pages = await asyncio.gather(
        *(
            queries.artifacts_page(workspace_id, session_id, action=action, limit=views.ARTIFACTS_PER_ACTION)
            for action in ArtifactAction
        )
    )
    return views.artifact_groups(zip(ArtifactAction, pages, strict=True))


def text_or_none(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


@dataclass(frozen=True)
class SessionsListing:
    """What the Sessions page shows: its filters (``status`` by value, blanks as ``None``) and its keyset page."""

    filters: dict[str, str | None]
    cursor: str | None


def sessions_listing(
    status: FromQuery[str | None] = None,
    agent_type: FromQuery[str | None] = None,
    plan: FromQuery[str | None] = None,
    external_id: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> SessionsListing:
    """The Sessions page's query parameters, read once for the page and for its live stream (a dependency of both,
    so the two can never disagree on what a filter means)."""
    chosen = choice(status, "status", SessionStatus)
    filters = {
        "status": chosen.value if chosen else None,
        "agent_type": text_or_none(agent_type),
        "plan": text_or_none(plan),
        "external_id": text_or_none(external_id),
    }
    return SessionsListing(filters, text_or_none(cursor))


SESSIONS_LISTING = {"listing": Provide(sessions_listing, sync_to_thread=False)}
"""The dependency both handlers declare; they ask for it as ``listing: Listing``."""
Listing = NamedDependency[SessionsListing]


async def session_rows(
    workspace_id: str, filters: dict[str, str | None], cursor: str | None
) -> tuple[list[SessionRead], str | None]:
    """The Sessions page's rows for its filters (``status`` by value) and keyset page, and the next page's cursor:
    what the page shows, and what its stream re-sends when it starts afresh."""
    status = filters.get("status")
    return await service.list_sessions(
        workspace_id,
        status=SessionStatus(status) if status else None,
        agent_type=filters.get("agent_type"),
        plan=filters.get("plan"),
        external_id=filters.get("external_id"),
        limit=views.SESSIONS_PAGE_SIZE,
        cursor=cursor,
    )


def newest_shown(timeline: list[views.TimelineItem], order: Order) -> str | None:
    """The id of the newest entry a log page shows (its first newest first, its last oldest first)."""
    if not timeline:
        return None
    return timeline[0].id if order == "desc" else timeline[-1].id


class SessionPages(Controller):
    """Sessions, one session, and its lifecycle."""

    path = "/sessions"
    guards = [signed_in]
    include_in_schema = False

    @get("/", dependencies=SESSIONS_LISTING)
    async def sessions(
        self, request: Request[Any, Any, Any], principal: CurrentPrincipal, listing: Listing
    ) -> Template:
        """The workspace's sessions, newest first, filtered, a keyset page at a time."""
        (items, next_cursor), plan_list = await asyncio.gather(
            session_rows(principal.workspace_id, listing.filters, listing.cursor),
            plans.list_plans(principal.workspace_id),
        )
        return page(
            request,
            "sessions.html.j2",
            nav="sessions",
            sessions=items,
            next_cursor=next_cursor,
            paged=bool(listing.cursor),
            cursor=listing.cursor,
            filters=listing.filters,
            statuses=list(SessionStatus),
            plans=[p.slug for p in plan_list],
        )

    @get("/{session_id:str}")
    async def session(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentPrincipal,
        session_id: SessionId,
        type: FromQuery[str | None] = None,
        order: FromQuery[str | None] = None,
    ) -> Template:
        """One session: its timeline a page at a time, artifacts, context, handoff notes, plan, lineage."""
        workspace_id = principal.workspace_id
        session = await service.get_session(workspace_id, session_id)  # 404 before anything else is read
        entry_type = choice(type, "type", EntryType)
        log_order: Order = "asc" if order == "asc" else "desc"
        number = views.page_number(request.query_params.get("page"))  # not a parameter: it would hide page()
        size = views.LOG_PAGE_SIZE
        (entries, total), groups, lineage, plan = await asyncio.gather(
            queries.work_log_page(
                workspace_id, session_id, entry_type=entry_type, offset=(number - 1) * size, limit=size, order=log_order
            ),
            artifact_groups(workspace_id, session_id),
            analytics.lineage(workspace_id, session_id),
            plans.find_plan(workspace_id, session.plan),
        )
        pager = views.Pager(page=number, size=size, total=total)
        if number > pager.pages:  # past the end (the log is shorter than the link said): show the last page
            pager = views.Pager(page=pager.pages, size=size, total=total)
            entries, total = await queries.work_log_page(
                workspace_id, session_id, entry_type=entry_type, offset=pager.offset, limit=size, order=log_order
            )
        timeline = [views.timeline_item(entry) for entry in entries]
        return page(
            request,
            "session.html.j2",
            nav="sessions",
            session=session,
            timeline=timeline,
            pager=pager,
            log_filters={"type": entry_type.value if entry_type else None, "order": log_order},
            entry_types=list(EntryType),
            kinds=views.KINDS,
            artifact_groups=groups,
            lineage=lineage,
            plan=plan_views.plan_with_progress(plan) if plan else None,
            buttons=views.lifecycle_buttons(session.status),
            live_edge=views.live_edge(pager, log_order),
            newest_shown=newest_shown(timeline, log_order),
        )

    @get("/{session_id:str}/blobs/{blob_id:str}")
    async def blob(self, principal: CurrentPrincipal, session_id: SessionId, blob_id: FromPath[str]) -> Stream:
        """An artifact's content, from the signed-in workspace only (404 otherwise), with the REST route's headers:
        inline only for types that cannot script (``blobs.delivery.INLINE_TYPES``), an attachment for the rest."""
        found = await blobs.download(principal.workspace_id, session_id, blob_id, range_header=None)
        return ClosingStream(found.body(), status_code=found.status, headers=found.headers)

    # Lifecycle: POST (CSRF-checked by the middleware), then back to the session page ----------------------------

    @post("/{session_id:str}/pause")
    async def pause(
        self, request: Request[Any, Any, Any], principal: CurrentPrincipal, session_id: SessionId
    ) -> Redirect:
        """Pause the session."""
        await service.pause(principal.workspace_id, session_id)
        return _back(request, session_id, "Session paused.")

    @post("/{session_id:str}/resume")
    async def resume(
        self, request: Request[Any, Any, Any], principal: CurrentPrincipal, session_id: SessionId
    ) -> Redirect:
        """Resume the session."""
        await service.resume(principal.workspace_id, session_id)
        return _back(request, session_id, "Session resumed.")

    @post("/{session_id:str}/complete")
    async def complete(
        self, request: Request[Any, Any, Any], principal: CurrentPrincipal, session_id: SessionId
    ) -> Redirect:
        """End the session as completed, with the summary typed in the confirmation."""
        summary = text_or_none(str((await request.form()).get("summary") or ""))
        await service.end(principal.workspace_id, session_id, status=SessionStatus.COMPLETED, summary=summary)
        return _back(request, session_id, "Session completed.")

    @post("/{session_id:str}/fail")
    async def fail(
        self, request: Request[Any, Any, Any], principal: CurrentPrincipal, session_id: SessionId
    ) -> Redirect:
        """End the session as failed, with the reason typed in the confirmation."""
        reason = text_or_none(str((await request.form()).get("reason") or ""))
        await service.end(principal.workspace_id, session_id, status=SessionStatus.FAILED, summary=reason)
        return _back(request, session_id, "Session marked as failed.")


def _back(request: Request[Any, Any, Any], session_id: str, message: str) -> Redirect:
    flash(request, message)
    return Redirect(f"/ui/sessions/{session_id}", status_code=303)
