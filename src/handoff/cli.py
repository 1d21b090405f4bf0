"""The ``handoff`` command line: thin commands over the same domain services the API uses.

Each command that needs the database opens it for its own length with :func:`handoff.db.open_database`, so
with no ``HANDOFF_MONGODB_URL`` it finds the bundled server that ``handoff serve`` runs (or starts one for the
length of the command).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Any, TypeVar

import click
from pymongo.errors import ConfigurationError, PyMongoError
from rich.console import Console
from rich.table import Column, Table

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
    except ConfigurationError as exc:
        raise click.ClickException(f"HANDOFF_MONGODB_URL: {exc}") from exc
    except PyMongoError as exc:  # the driver's own text (server descriptions) is too long for one line
        raise click.ClickException(
            f"the database did not answer ({type(exc).__name__}); check HANDOFF_MONGODB_URL"
        ) from exc


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
    """Run the REST API (and the bundled MongoDB when HANDOFF_MONGODB_URL is unset).

    SIGTERM stops it gracefully; with workers, SIGHUP restarts them one at a time.
    """
    from handoff.db import mongodb_url  # noqa: PLC0415 - a server is only needed here
    from handoff.localdb import LocalMongoError  # noqa: PLC0415
    from handoff.ops import server  # noqa: PLC0415
    from handoff.ratelimit.table import table_file_for_workers  # noqa: PLC0415

    settings = _settings()
    try:
        with mongodb_url(settings) as url, ExitStack() as stack:
            if workers > 1 and settings.rate_limit > 0 and settings.rate_limit_table is None:
                # The workers count rate limits in one table: its file is named in the environment they inherit.
                table = stack.enter_context(table_file_for_workers())
                os.environ["HANDOFF_RATE_LIMIT_TABLE"] = str(table)
            if not settings.mongodb_url:
                err_console.print(f"[dim]bundled MongoDB at {url} (data in {settings.data_dir})[/dim]")
            server.run(settings, host=host, port=port, workers=workers)
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


@workspaces_group.command("set-retention")
@click.argument("slug")
@click.option(
    "--ended-after-days",
    type=click.IntRange(1, workspaces.MAX_RETENTION_DAYS),
    help="Delete ended sessions this many days after they end.",
)
@click.option("--clear", is_flag=True, help="Keep ended sessions for ever (remove the retention).")
def workspaces_set_retention(slug: str, ended_after_days: int | None, clear: bool) -> None:
    """Set how long the workspace keeps ended sessions; the service deletes older ones in the background."""
    if clear == (ended_after_days is not None):
        raise click.UsageError("give either --ended-after-days N or --clear")
    workspace = run_with_database(lambda: workspaces.set_retention(slug, ended_after_days=ended_after_days))
    if workspace.retention_ended_after_days is None:
        click.echo(f"workspace {workspace.slug} keeps ended sessions")
    else:
        click.echo(
            f"workspace {workspace.slug} deletes sessions {workspace.retention_ended_after_days} days after they end"
        )


@cli.group("keys")
def keys_group() -> None:
    """Issue, list and revoke API keys."""


@keys_group.command("create")
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug.")
@click.option("--name", help="What the key is for.")
@click.option(
    "--expires-in-days",
    type=click.IntRange(1, workspaces.MAX_KEY_LIFETIME_DAYS),
    help="Expire the key after this many days.",
)
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
    rows = [
        (
            key.key_id,
            key.prefix + "…",
            key.name or "-",
            _when(key.created_at),
            _when(key.last_used_at),
            _when(key.revoked_at),
            _when(key.expires_at),
        )
        for key in found
    ]
    # The id is what ``keys revoke`` takes, so it and the prefix are never cut ("key_5003…") on a narrow or piped
    # (80-column) output: the other columns wrap or shrink instead, and where even the two cannot fit the table
    # runs past the width (crop=False) rather than losing their ends.
    table = Table(
        Column("id", no_wrap=True, min_width=max((len(row[0]) for row in rows), default=1)),
        Column("prefix", no_wrap=True, min_width=max((len(row[1]) for row in rows), default=1)),
        "name",
        "created",
        "last used",
        "revoked",
        "expires",
    )
    for row in rows:
        table.add_row(*row)
    console.print(table, crop=False)


@keys_group.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key (effective within 5 seconds on running servers)."""
    key = run_with_database(lambda: workspaces.revoke_api_key(key_id))
    click.echo(f"revoked {key.key_id} ({key.prefix}…)")


@cli.command("mcp")
@click.option("--url", help="The handoff service (default: HANDOFF_URL, else http://127.0.0.1:8000).")
@click.option("--api-key", help="A workspace API key (default: HANDOFF_API_KEY; prefer the variable).")
def mcp_command(url: str | None, api_key: str | None) -> None:
    """Run the MCP server over stdio, its tools talking to a handoff service through the client."""
    from handoff.mcp.stdio import MissingApiKey, run_stdio, stdio_config  # noqa: PLC0415 - only this command

    try:
        config = stdio_config(url, api_key)
    except MissingApiKey as exc:
        raise click.ClickException(str(exc)) from exc
    run_stdio(config)


@cli.command("export")
@click.option("--workspace", "workspace_slug", help="Workspace slug (default: every workspace).")
@click.option("--status", type=click.Choice(["active", "paused", "completed", "failed"]), help="Only this status.")
@click.option("--output", "-o", default="-", show_default=True, help="File to write; - is stdout.")
@click.option("--blobs", "blobs_dir", help="Also write the sessions' blobs into this directory (see import --blobs).")
def export_command(workspace_slug: str | None, status: str | None, output: str, blobs_dir: str | None) -> None:
    """Write sessions as JSON Lines: the Session fields plus the full work log and artifacts."""
    from pymongo.errors import PyMongoError  # noqa: PLC0415 - only the bulk commands need these

    from handoff import bulk  # noqa: PLC0415
    from handoff.bulk import blobs  # noqa: PLC0415

    try:
        count = run_with_database(lambda: bulk.export_to_path(output, workspace=workspace_slug, status=status))
        if blobs_dir is not None:
            stored = run_with_database(lambda: blobs.export_blobs(blobs_dir, workspace=workspace_slug, status=status))
            click.echo(f"exported {stored} blobs to {blobs_dir}", err=True)
    except (OSError, PyMongoError) as exc:
        raise click.ClickException(f"export failed: {exc}") from exc
    click.echo(f"exported {count} sessions", err=True)


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug to import into.")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["auto", "jsonl", "laravel"]),
    default="auto",
    show_default=True,
    help="jsonl: what export writes; laravel: agent_sessions rows (JSON array or lines); auto: by each row.",
)
@click.option(
    "--on-conflict",
    type=click.Choice(["skip", "replace"]),
    default="skip",
    show_default=True,
    help="A session already there: keep it (skip) or overwrite it whole (replace).",
)
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--rejects", help="Where rejected lines go (default: <first PATH>.rejects.jsonl), rewritten each run.")
@click.option("--plan-map", "plan_map_path", help='JSON {"<laravel plan id>": "<plan slug>"} for Laravel rows.')
@click.option("--blobs", "blobs_dir", help="Then read the blobs export --blobs wrote into this directory.")
@click.pass_context
def import_command(
    ctx: click.Context,
    *,
    paths: tuple[str, ...],
    workspace_slug: str,
    file_format: str,
    on_conflict: str,
    batch_size: int,
    rejects: str | None,
    plan_map_path: str | None,
    blobs_dir: str | None = None,
) -> None:
    """Import sessions from handoff's JSON Lines or rows of the Laravel agent_sessions table.

    Exit status: 0 nothing rejected, 3 some rows rejected (see the rejects file), 2 a file cannot be read.
    """
    import sys  # noqa: PLC0415 - only the bulk commands need these

    from pymongo.errors import PyMongoError  # noqa: PLC0415

    from handoff import bulk  # noqa: PLC0415
    from handoff.bulk.progress import progress_for  # noqa: PLC0415

    try:
        bulk.check_readable(paths)
        plan_map = bulk.read_plan_map(plan_map_path) if plan_map_path else None
        result = run_with_database(
            lambda: bulk.import_files(
                paths,
                workspace=workspace_slug,
                file_format=file_format,  # type: ignore[arg-type]  # click.Choice checked it
                on_conflict=on_conflict,  # type: ignore[arg-type]
                batch_size=batch_size,
                rejects=rejects,
                plan_map=plan_map,
                progress=progress_for(sys.stderr),
            )
        )
    except bulk.UnreadableFile as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(2)
    except PyMongoError as exc:
        raise click.ClickException(f"import stopped, the database failed: {exc}") from exc
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.rejects_path is not None:
        click.echo(f"rejected rows written to {result.rejects_path}", err=True)
    click.echo(result.summary())
    blobs_rejected = _import_blobs(blobs_dir, workspace_slug) if blobs_dir is not None else False
    ctx.exit(3 if result.rejected or blobs_rejected else 0)


def _import_blobs(directory: str, workspace_slug: str) -> bool:
    """``import --blobs``: after the sessions, their blobs; whether any was rejected (each is reported)."""
    from pymongo.errors import PyMongoError  # noqa: PLC0415 - only the bulk commands need these

    from handoff.bulk import blobs  # noqa: PLC0415

    settings = _settings()
    try:
        done = run_with_database(lambda: blobs.import_blobs(directory, workspace=workspace_slug, settings=settings))
    except OSError as exc:
        raise click.ClickException(f"cannot read blobs from {directory}: {exc}") from exc
    except PyMongoError as exc:
        raise click.ClickException(f"blob import stopped, the database failed: {exc}") from exc
    for reason in done.rejected:
        click.echo(f"rejected blob: {reason}", err=True)
    click.echo(done.summary())
    return bool(done.rejected)


@cli.command("migrate")
def migrate_command() -> None:
    """Move every session stored before the paged log into it (each is also moved by its next write), then fold
    every session the artifacts rollup has not taken in yet (the background pass would too)."""
    import sys  # noqa: PLC0415 - only this command needs these

    from handoff.analytics.rollup import worker as rollup  # noqa: PLC0415
    from handoff.progress import counting  # noqa: PLC0415
    from handoff.sessions import migration, misses  # noqa: PLC0415

    settings = _settings()

    async def migrate() -> int:
        migrated = 0
        with counting(sys.stderr, "migrating", total=await migration.count_legacy()) as moved_to:

            def one_more() -> None:
                nonlocal migrated
                migrated += 1
                moved_to(migrated)

            return await migration.migrate_workspaces(bounds=misses.page_bounds(settings), on_session=one_more)

    click.echo(f"migrated {run_with_database(migrate, settings)} sessions")

    async def fold() -> int:
        return sum((await rollup.catch_up_all()).values())

    click.echo(f"artifacts rollup: took in {run_with_database(fold, settings)} sessions")


@cli.command("prune")
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug.")
@click.option("--ended-before", required=True, help="Delete sessions that ended before this ISO 8601 date (UTC).")
@click.option("--dry-run", is_flag=True, help="Only count them.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), help="Sessions per batch (HANDOFF_RETENTION_BATCH_SIZE).")
def prune_command(workspace_slug: str, ended_before: str, dry_run: bool, batch_size: int | None) -> None:
    """Delete a workspace's ended sessions that ended before a date, with their pages and blobs; counts first."""
    import sys  # noqa: PLC0415 - only this command needs these

    from handoff.analytics.service import parse_instant  # noqa: PLC0415
    from handoff.progress import counting  # noqa: PLC0415
    from handoff.retention import service as retention  # noqa: PLC0415

    settings = _settings()
    try:
        cutoff = parse_instant(ended_before, "--ended-before")
    except HandoffError as exc:
        raise click.ClickException(str(exc)) from exc
    assert cutoff is not None

    async def count_then_prune() -> retention.PruneResult:
        workspace = await workspaces.get_workspace(workspace_slug)
        found = await retention.count_expired(workspace.workspace_id, cutoff)
        click.echo(f"{found:,} ended sessions of {workspace_slug} ended before {cutoff.isoformat()}")
        if dry_run or not found:
            return retention.PruneResult(found=found)
        with counting(sys.stderr, "pruning", total=found) as after_batch:
            return await retention.prune(
                workspace.workspace_id,
                ended_before=cutoff,
                batch_size=batch_size or settings.retention_batch_size,
                after_batch=after_batch,
            )

    result = run_with_database(count_then_prune, settings)
    click.echo("dry run: nothing deleted" if dry_run else f"deleted {result.deleted:,} sessions")


@cli.command("stats")
@click.option("--workspace", "workspace_slug", help="Workspace slug (default: every workspace).")
@click.option("--since", help="Only sessions started at or after this ISO 8601 date or date-time (UTC).")
def stats_command(workspace_slug: str | None, since: str | None) -> None:
    """Print the analytics summary and per-agent figures (the same as GET /v1/analytics/summary and /agents)."""
    from handoff.analytics import report  # noqa: PLC0415 - only this command
    from handoff.analytics import service as analytics  # noqa: PLC0415

    try:
        window = analytics.parse_window(since)
    except HandoffError as exc:
        raise click.ClickException(str(exc)) from exc
    found = run_with_database(lambda: report.gather(workspace_slug, window))
    if not found:
        click.echo("no workspaces yet: handoff workspaces create SLUG")
        return
    console.print(report.render(found, window))


@cli.group("claims")
def claims_group() -> None:
    """Read the claims of the handoff queue."""


@claims_group.command("list")
@click.option("--workspace", "workspace_slug", help="Workspace slug (default: every workspace).")
@click.option("--state", type=click.Choice(["active", "expired", "released", "completed"]), help="Only this state.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Claims per workspace.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines (one claim a line) instead of a table.")
def claims_list(workspace_slug: str | None, state: Any, limit: int, as_json: bool) -> None:
    """List claims, newest first, with their state as of now (the same as GET /v1/claims)."""
    from handoff.claims import report  # noqa: PLC0415 - only this command

    listed = run_with_database(lambda: report.gather(workspace_slug, state=state, limit=limit))
    if as_json:
        if listed:
            click.echo(report.json_lines(listed))
        return
    if not listed:
        click.echo("no claims")
        return
    console.print(report.table(listed))


@cli.command("tail")
@click.argument("session_id", required=False)
@click.option("--workspace", "workspace_slug", help="Workspace slug (default: the only workspace).")
@click.option("--types", help="Comma-separated event types to show (default: all).")
@click.option("--json", "json_lines", is_flag=True, help="One JSON object a line, for machines.")
@click.option("--max-events", type=click.IntRange(1), help="Exit after this many events.")
def tail_command(
    session_id: str | None, workspace_slug: str | None, types: str | None, json_lines: bool, max_events: int | None
) -> None:
    """Print a workspace's (or one session's) events as they happen, until Ctrl-C. Needs no running service."""
    from handoff import tail  # noqa: PLC0415 - only this command
    from handoff.events.mapping import parse_types  # noqa: PLC0415

    try:
        wanted = parse_types(types)
    except HandoffError as exc:
        raise click.ClickException(str(exc)) from exc
    settings = _settings()
    write = tail.printer(console, json_lines=json_lines)
    try:
        run_with_database(
            lambda: tail.tail(
                settings,
                workspace_slug=workspace_slug,
                session_id=session_id,
                types=wanted,
                write=write,
                max_events=max_events,
            ),
            settings,
        )
    except KeyboardInterrupt:  # Ctrl-C is how a tail ends: the hub and the database were closed on the way out
        return


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="handoff")


if __name__ == "__main__":  # pragma: no cover
    main()
