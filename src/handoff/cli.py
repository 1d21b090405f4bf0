"""The ``handoff`` command line: thin commands over the same domain services the API uses.

Each command that needs the database opens it for its own length with :func:`handoff.db.open_database`, so
with no ``HANDOFF_MONGODB_URL`` it finds the bundled server that ``handoff serve`` runs (or starts one for the
length of the command).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from handoff.config import Settings, SettingsError, load_settings
from handoff.db import open_database
from handoff.errors import HandoffError
from handoff.workspaces import service as workspaces

T = TypeVar("T")

console = Console(stderr=False)
err_console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def run_with_database(operation: Callable[[], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run one async domain operation against the configured database, turning domain errors into one line."""
    from handoff.localdb import LocalMongoError  # noqa: PLC0415 - only the embedded default needs it

    settings = settings or _settings()

    async def main() -> T:
        async with open_database(settings):
            return await operation()

    try:
        return asyncio.run(main())
    except (HandoffError, LocalMongoError) as exc:
        raise click.ClickException(str(exc)) from exc


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


@click.group()
@click.version_option(package_name="handoff")
def cli() -> None:
    """handoff: the working memory of AI agents."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
def serve(host: str, port: int, workers: int) -> None:
    """Run the REST API (and the bundled MongoDB when HANDOFF_MONGODB_URL is unset)."""
    import uvicorn  # noqa: PLC0415 - a server is only needed here

    from handoff.app import create_app  # noqa: PLC0415
    from handoff.db import mongodb_url  # noqa: PLC0415
    from handoff.localdb import LocalMongoError  # noqa: PLC0415

    settings = _settings()
    try:
        with mongodb_url(settings) as url:
            if not settings.mongodb_url:
                err_console.print(f"[dim]bundled MongoDB at {url} (data in {settings.data_dir})[/dim]")
            if workers == 1:
                uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower())
            else:
                # Workers import the factory themselves; each finds the bundled server through its state file.
                uvicorn.run(
                    "handoff.app:create_app",
                    factory=True,
                    host=host,
                    port=port,
                    workers=workers,
                    log_level=settings.log_level.lower(),
                )
    except LocalMongoError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.group("workspaces")
def workspaces_group() -> None:
    """Create and list workspaces."""


@workspaces_group.command("create")
@click.argument("slug")
@click.option("--name", help="Display name (default: the slug).")
def workspaces_create(slug: str, name: str | None) -> None:
    """Create a workspace."""
    workspace = run_with_database(lambda: workspaces.create_workspace(slug, name=name))
    click.echo(f"created workspace {workspace.slug} ({workspace.workspace_id})")


@workspaces_group.command("list")
def workspaces_list() -> None:
    """List workspaces."""
    found = run_with_database(workspaces.list_workspaces)
    table = Table("slug", "name", "id", "created")
    for workspace in found:
        table.add_row(workspace.slug, workspace.name, workspace.workspace_id, _when(workspace.created_at))
    console.print(table)


@cli.group("keys")
def keys_group() -> None:
    """Issue, list and revoke API keys."""


@keys_group.command("create")
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug.")
@click.option("--name", help="What the key is for.")
@click.option("--expires-in-days", type=click.IntRange(min=1), help="Expire the key after this many days.")
def keys_create(workspace_slug: str, name: str | None, expires_in_days: int | None) -> None:
    """Create a key; prints the key alone on stdout, once. Only its hash is stored."""
    _, secret = run_with_database(
        lambda: workspaces.create_api_key(workspace_slug, name=name, expires_in_days=expires_in_days)
    )
    click.echo(secret)


@keys_group.command("list")
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug.")
def keys_list(workspace_slug: str) -> None:
    """List a workspace's keys (never the keys themselves)."""
    found = run_with_database(lambda: workspaces.list_api_keys(workspace_slug))
    table = Table("id", "prefix", "name", "created", "last used", "revoked", "expires")
    for key in found:
        table.add_row(
            key.key_id,
            key.prefix + "…",
            key.name or "-",
            _when(key.created_at),
            _when(key.last_used_at),
            _when(key.revoked_at),
            _when(key.expires_at),
        )
    console.print(table)


@keys_group.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key (effective within 5 seconds on running servers)."""
    key = run_with_database(lambda: workspaces.revoke_api_key(key_id))
    click.echo(f"revoked {key.key_id} ({key.prefix}…)")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="handoff")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
