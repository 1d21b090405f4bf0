"""The claims REST routes (api.md, "Handoff claims"): thin, the rules are in ``service.py``."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from handoff.auth import CurrentPrincipal
from handoff.claims import service
from handoff.claims.models import ClaimState
from handoff.claims.schemas import ClaimCreated, ClaimList, ClaimRead, ClaimRequest, Heartbeat, ReleaseRequest
from handoff.config import Settings
from handoff.openapi import no_content, problems, retried
from handoff.sessions.controller import IdempotencyKey

CLAIM = "/claims/{claim_id:str}"


class ClaimController(Controller):
    """The queue of waiting handoffs: claim one, keep its lease, give it back, read claims."""

    path = "/"
    tags = ["claims"]

    @post(
        "/handoffs/claim",
        responses={
            **retried(ClaimCreated, "The claim an earlier request with the same Idempotency-Key made"),
            **no_content("No handoff is waiting (none matches the filters)"),
            **problems(body=True),
        },
    )
    async def claim_handoff(
        self,
        request: Request[Any, Any, State],
        principal: CurrentPrincipal,
        data: JSONBody[ClaimRequest | None],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ClaimCreated | None]:
        """Claim the oldest waiting handoff (optionally of an agent type or plan) and open its replay; 204 when
        nothing waits."""
        settings: Settings = request.app.state.settings
        claim, made = await service.claim_handoff(
            principal, data or ClaimRequest(), idempotency_key=idempotency_key, settings=settings
        )
        if claim is None:
            return Response(None, status_code=HTTP_204_NO_CONTENT)
        return Response(claim, status_code=HTTP_201_CREATED if made else HTTP_200_OK)

    @get("/claims", responses=problems())
    async def list_claims(
        self,
        principal: CurrentPrincipal,
        claim_state: Annotated[ClaimState | None, QueryParameter(name="state")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> ClaimList:
        """The workspace's claims, newest first."""
        items, next_cursor = await service.list_claims(
            principal.workspace_id, state=claim_state, limit=limit, cursor=cursor
        )
        return ClaimList(items=items, next_cursor=next_cursor)

    @get(CLAIM, responses=problems(404))
    async def get_claim(self, principal: CurrentPrincipal, claim_id: FromPath[str]) -> ClaimRead:
        """One claim, its state as of now."""
        return await service.get_claim(principal.workspace_id, claim_id)

    @post(CLAIM + "/heartbeat", status_code=200, responses=problems(404, 409))
    async def heartbeat(self, principal: CurrentPrincipal, claim_id: FromPath[str]) -> Heartbeat:
        """Renew the lease from now."""
        return await service.heartbeat(principal.workspace_id, claim_id)

    @post(CLAIM + "/release", status_code=200, responses=problems(404, 409, body=True))
    async def release_claim(
        self, principal: CurrentPrincipal, claim_id: FromPath[str], data: JSONBody[ReleaseRequest | None]
    ) -> ClaimRead:
        """Give the handoff back at once; its replay session fails, saying why."""
        return await service.release(principal.workspace_id, claim_id, (data or ReleaseRequest()).reason)
