"""Schemathesis against the app's own OpenAPI schema, in-process, as two workspaces that must not see each other.

Every operation of ``/schema/openapi.json`` runs through schemathesis' engine (the same one its CLI drives):
the coverage phase (boundary and invalid values for every parameter and body), the fuzzing phase and the
stateful phase (operations linked through ``{session_id}`` and ``{slug}``, so sessions are really created, written,
ended and replayed). Each response passes the checks the contract asks for: no 500, only declared statuses and
content types, bodies that match their schema, invalid input refused, and ``object_level_authorization``:
whatever one workspace reads is replayed with the other workspace's key and must not come back.

Schemathesis calls an ASGI app on a loop of its own in a portal thread, where the test session's client cannot
be used, so the app here is built *without* an injected database and opens its own client in its lifespan; the
workspaces and keys are written beforehand with pymongo's synchronous client. Examples are bounded (and the
seed fixed) so the run takes well under a minute and is reproducible.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import hypothesis.configuration
import pytest
import schemathesis
from litestar import Litestar
from pymongo import MongoClient
from schemathesis.engine import events, from_schema
from schemathesis.python import asgi

from handoff.app import create_app
from handoff.config import Settings
from handoff.localdb import MongodProcess
from handoff.workspaces.service import DISPLAY_PREFIX_CHARS, KEY_PREFIX, hash_key

MAX_EXAMPLES = 10
SEED = 20261124
PEERS = ("acme", "globex")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "object_level_authorization",
)


@dataclass
class FuzzRun:
    """What one engine run saw: failures (deduplicated), statuses answered and checks run, per phase."""

    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)
    operations: set[str] = field(default_factory=set)


def _seed_workspaces(url: str, database: str) -> dict[str, str]:
    """Two workspaces with one key each, written with the sync client: the app's own client lives on another loop."""
    secrets_by_slug: dict[str, str] = {}
    now = datetime.now(UTC)
    with MongoClient(url) as client:
        db = client[database]
        for slug in PEERS:
            workspace_id = f"ws_{secrets.token_hex(8)}"
            db.workspaces.insert_one(
                {"workspace_id": workspace_id, "slug": slug, "name": slug, "created_at": now, "updated_at": now}
            )
            secret = KEY_PREFIX + secrets.token_urlsafe(32)
            db.api_keys.insert_one(
                {
                    "key_id": f"key_{secrets.token_hex(8)}",
                    "workspace_id": workspace_id,
                    "name": "schemathesis",
                    "prefix": secret[:DISPLAY_PREFIX_CHARS],
                    "secret_sha256": hash_key(secret),
                    "created_at": now,
                    "last_used_at": None,
                    "revoked_at": None,
                    "expires_at": None,
                }
            )
            secrets_by_slug[slug] = secret
    return secrets_by_slug


@pytest.fixture(scope="module")
def fuzz_app(mongod: MongodProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Litestar, Path]]:
    """The app on a fresh database of its own, and a Web Fuzzing Commons auth file naming the two peers' keys."""
    name = f"t_fuzz_{secrets.token_hex(3)}"
    keys = _seed_workspaces(mongod.url, name)
    home = tmp_path_factory.mktemp("schemathesis")
    wfc = home / "peers.json"
    wfc.write_text(
        json.dumps(
            {
                "auth": [
                    {"name": slug, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {secret}"}]}
                    for slug, secret in keys.items()
                ]
            }
        )
    )
    hypothesis.configuration.set_hypothesis_home_dir(home / "hypothesis")  # keeps .hypothesis/ out of the tree
    app = create_app(Settings(mongodb_url=mongod.url, database=name, data_dir=home, log_level="WARNING"))
    try:
        yield app, wfc
    finally:
        asgi.shutdown_lifespans()  # closes the app's client on schemathesis' loop
        hypothesis.configuration.set_hypothesis_home_dir(None)
        with MongoClient(mongod.url) as client:
            client.drop_database(name)


def _config(wfc: Path, cache: Path) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "cache": {"enabled": False, "directory": str(cache)},
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "auth": {"wfc": {"path": str(wfc), "peers": list(PEERS)}},
        }
    )


def _run(schema: schemathesis.BaseSchema) -> FuzzRun:
    run = FuzzRun()
    seen: set[str] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            phase = event.phase.value
            if event.label:
                run.operations.add(event.label)
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    run.statuses[(phase, interaction.response.status_code)] += 1
            for nodes in event.recorder.checks.values():
                for node in nodes:
                    run.checks[node.name] += 1
                    if node.failure_info is None:
                        continue
                    failure = node.failure_info.failure
                    line = f"[{phase}] {event.label} {node.name}: {failure.title}\n    {failure.message.strip()}"
                    if line not in seen:
                        seen.add(line)
                        run.failures.append(f"{line}\n    {node.failure_info.code_sample}")
        elif isinstance(event, events.NonFatalError):
            run.errors.append(f"{event.label}: {event.info.title}: {event.info}")
        elif isinstance(event, events.FatalError):
            run.errors.append(f"fatal: {event.exception!r}")
    return run


# Hypothesis warns when it prints a big generated value (a 40 kB task list); with warnings as errors that would
# end the run as a schemathesis error, though nothing of the API is wrong.
@pytest.mark.filterwarnings("ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")
# Some of schemathesis' own strategies call the `random` module, which Hypothesis deprecates with a warning that,
# as an error, ended one run in three on this machine as a "Runtime Error" of an operation (old code and new alike):
# a matter between the two libraries, not of the API.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning"
)
def test_every_operation_conforms_to_its_schema_and_keeps_workspaces_apart(
    fuzz_app: tuple[Litestar, Path], tmp_path: Path
) -> None:
    app, wfc = fuzz_app
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app, config=_config(wfc, tmp_path))
    operations = [result.ok() for result in schema.get_all_operations()]
    v1 = {f"{op.method.upper()} {op.path}" for op in operations if op.path.startswith("/v1")}

    run = _run(schema)

    assert not run.errors, "\n".join(run.errors)
    assert not run.failures, f"{len(run.failures)} schemathesis failure(s):\n" + "\n\n".join(run.failures)
    assert v1 <= run.operations, f"operations never exercised: {sorted(v1 - run.operations)}"
    assert all(run.checks[name] for name in CHECKS), f"checks that never ran: {run.checks}"
    answered = {status for (_, status) in run.statuses}
    assert {200, 201, 204, 404, 409, 422} <= answered, f"the run reached too little of the API: {run.statuses}"
    assert any(phase == "stateful" for phase, _ in run.statuses), "the stateful phase sent nothing"
