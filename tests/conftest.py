"""Test fixtures: one real mongod for the whole run, a fresh database per test module.

The server is the bundled MongoDB 6.0 started as a replica set of one on a free loopback port with a temporary
dbpath; nothing is mocked. Collections are emptied (not dropped) before each test so indexes survive.
"""

from __future__ import annotations

import gc
import re
import secrets
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from pymongo import MongoClient as SyncMongoClient
from pymongo.database import Database

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import DOCUMENT_MODELS, MongoClient, MongoDatabase, create_client, init_database
from handoff.localdb import MongodProcess, start_mongod
from tests.api import Api
from tests.factories import Tenant, make_tenant, small_pages_settings
from tests.inprocess import in_process
from tests.live_service import LiveService, run_service


@pytest.fixture(scope="session")
def mongod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongodProcess]:
    """The real MongoDB server of this test run."""
    server = start_mongod(Path(tmp_path_factory.mktemp("mongod")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def mongo_client(mongod: MongodProcess) -> AsyncIterator[MongoClient]:
    client = create_client(mongod.url, Settings(mongodb_url=mongod.url))
    yield client
    await client.close()


@pytest.fixture(scope="module")
async def database(request: pytest.FixtureRequest, mongo_client: MongoClient) -> AsyncIterator[MongoDatabase]:
    """A database of this test module's own, initialised (indexes created), dropped afterwards."""
    module = re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])[:40]
    name = f"t_{module}_{secrets.token_hex(3)}"
    db = await init_database(mongo_client, name)
    yield db
    await mongo_client.drop_database(name)


@pytest.fixture
def cli_db(
    request: pytest.FixtureRequest, mongod: MongodProcess, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Database[dict[str, Any]]]:
    """A database of this test's own for ``handoff`` commands, named to them by the environment and read and
    written here through a plain PyMongo client; dropped afterwards.

    The CLI reads ``HANDOFF_*`` from the environment and runs each command in its own ``asyncio.run``, so its
    tests are synchronous and cannot share the async fixtures' database. ``COLUMNS`` is wide, so that rich
    tables fold no cell.
    """
    module = re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])[:40]
    name = f"t_{module}_{secrets.token_hex(4)}"
    monkeypatch.setenv("HANDOFF_MONGODB_URL", mongod.url)
    monkeypatch.setenv("HANDOFF_DATABASE", name)
    monkeypatch.setenv("COLUMNS", "250")
    client: SyncMongoClient[dict[str, Any]] = SyncMongoClient(mongod.url, tz_aware=True)
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture
def collect_pymongo_leaked_socket() -> Iterator[None]:
    """After the test, collect (quietly) the socket PyMongo leaks when a client closes while its monitor connects.

    ``pool_shared._async_create_connection`` closes its socket on ``OSError``/``TimeoutError`` but not on
    ``CancelledError``, and the cancelled monitor task keeps it reachable from the client. Tests that close a
    client on a stopped or missing server provoke it; left to the garbage collector, its ResourceWarning (an
    error under ``filterwarnings = error``) lands on some unrelated later test. A fixture's teardown runs once the
    test's frame, and with it the test's reference to the client, is gone, so one collection finds the socket.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(autouse=True)
async def _empty_collections(request: pytest.FixtureRequest) -> None:
    """Start every database test from empty collections (indexes kept)."""
    if "database" not in request.fixturenames:
        return
    db: MongoDatabase = request.getfixturevalue("database")
    for model in DOCUMENT_MODELS:
        await db[model.get_collection_name()].delete_many({})


@pytest.fixture
def settings(mongod: MongodProcess, database: MongoDatabase) -> Settings:
    return Settings(mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent"))


@pytest.fixture(scope="module")
def small_settings(mongod: MongodProcess, database: MongoDatabase) -> Settings:
    """The settings of a module's small-page app (``tests.factories.small_pages_app``), for what else it runs."""
    return small_pages_settings(mongod, database)


@pytest.fixture
def app(settings: Settings, database: MongoDatabase) -> Litestar:
    return create_app(settings, database=database)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling the app in-process (see ``tests.inprocess``)."""
    async with in_process(app) as http:
        yield http


@pytest.fixture
async def tenant(database: MongoDatabase) -> Tenant:
    """A workspace with a valid key."""
    return await make_tenant("acme")


@pytest.fixture
def api(client: httpx.AsyncClient, tenant: Tenant) -> Api:
    """The sessions API, called as ``tenant``."""
    return Api(client, tenant)


@pytest.fixture
async def other_tenant(database: MongoDatabase) -> Tenant:
    """A second workspace, to prove nothing crosses between tenants."""
    return await make_tenant("globex")


@pytest.fixture(scope="session")
def live_service(mongod: MongodProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """A real ``handoff serve`` process on this run's mongod (a database of its own), with a workspace key."""
    yield from run_service(mongod, Path(tmp_path_factory.mktemp("live")))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Leave each phase's report on the test item, so a fixture's teardown can tell that its test failed."""
    report: pytest.TestReport = yield
    setattr(item, f"rep_{report.when}", report)
    return report
