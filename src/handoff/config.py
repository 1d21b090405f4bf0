"""Settings from the environment, in one object.

Every knob of the service is a field here, read from ``HANDOFF_*`` variables. Nothing else in the code
reads ``os.environ``: tests and the CLI build a ``Settings`` and pass it down, so behaviour never depends on
hidden global state.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024
KIB = 1024


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("handoff", appauthor=False))


class Settings(BaseSettings):
    """The service's configuration; each field is the variable ``HANDOFF_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="HANDOFF_", extra="ignore", frozen=True)

    mongodb_url: str | None = Field(
        default=None, description="MongoDB connection string; unset starts the bundled server."
    )
    database: str = Field(default="handoff", min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_-]+$")
    data_dir: Path = Field(default_factory=_default_data_dir, description="Where the bundled server keeps its data.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    max_body_bytes: int = Field(default=1 * MIB, ge=1 * KIB, description="Largest request body accepted.")
    max_payload_bytes: int = Field(
        default=64 * KIB, ge=1, description="Largest serialized details/data/metadata of one entry."
    )
    request_body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Longest time a request body may take to arrive before answering 408."
    )
    max_text_chars: int = Field(default=10_000, ge=1, description="Longest message or action string.")
    max_path_chars: int = Field(default=1_024, ge=1, description="Longest artifact path.")
    max_session_bytes: int = Field(
        default=1024 * MIB,
        ge=0,
        description="Cap on a session's stored bytes (entries, artifacts and blobs); 0 for none.",
    )
    page_entries: int = Field(
        default=500, ge=2, le=10_000, description="Entries an open page holds before its oldest are sealed."
    )
    page_bytes: int = Field(
        default=256 * KIB,
        ge=4 * KIB,
        le=4 * MIB,
        description="Bytes an open page holds before its oldest entries are sealed into a page.",
    )
    server_selection_timeout_ms: int = Field(
        default=15_000, ge=100, description="How long a request waits for a primary before answering 503."
    )
    api_key_cache_seconds: float = Field(
        default=5.0, ge=0, le=5.0, description="How long a resolved API key is trusted (revocation delay)."
    )
    idempotency_ttl_hours: int = Field(default=24, ge=24, description="How long Idempotency-Key records live.")

    # Operations (issue 17: metrics, tracing, logs, deadlines, graceful restarts; see handoff.ops) -----------------
    metrics_enabled: bool = Field(default=True, description="Count requests and serve GET /metrics.")
    metrics_token: SecretStr | None = Field(
        default=None, description="When set, GET /metrics requires `Authorization: Bearer <token>`."
    )
    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        validation_alias="prometheus_multiproc_dir",  # prometheus-client's own variable, PROMETHEUS_MULTIPROC_DIR
        description="Where workers share their metrics; `handoff serve --workers N` sets a fresh one.",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias="otel_exporter_otlp_endpoint",  # OpenTelemetry's own variable, OTEL_EXPORTER_OTLP_ENDPOINT
        description="OTLP/HTTP collector; with the opentelemetry extra installed, traces go there.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object a line, with one access line per request."
    )
    request_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        description="Deadline of a request's database work (longer than an election); past it, 503.",
    )
    shutdown_timeout_seconds: float = Field(
        default=25.0, ge=0, description="How long SIGTERM waits for in-flight requests before cancelling them."
    )

    @field_validator("metrics_token", "otel_exporter_otlp_endpoint", "prometheus_multiproc_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``VAR=`` in a compose file or a unit means "not set", not "a token of no characters"."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("otel_exporter_otlp_endpoint")
    @classmethod
    def _check_otlp_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be the collector's http:// or https:// base URL (OTLP over HTTP)")
        return value

    # Blobs (issue 13) --------------------------------------------------------------------------------------------
    max_blob_bytes: int = Field(default=256 * MIB, ge=1, description="Largest blob one upload may store (413 above).")
    blob_upload_min_bytes_per_second: int = Field(
        default=64 * KIB,
        ge=1,
        description=(
            "Slowest average rate a blob upload may keep once past HANDOFF_REQUEST_BODY_TIMEOUT_SECONDS (408 below); "
            "a long upload that keeps arriving is never cut."
        ),
    )

    # Rate limits, quotas and retention (issue 17 items 4-5: handoff.ratelimit, handoff.quotas, handoff.retention)
    rate_limit: float = Field(
        default=0, ge=0, description="Requests per second allowed per API key, across all workers; 0 = no limit."
    )
    rate_limit_burst: int | None = Field(
        default=None, ge=1, description="Requests a key may make at once; default: one second's worth (at least 1)."
    )
    rate_limit_table: Path | None = Field(
        default=None, description="The shared counters' file; set by handoff serve for its workers, else private."
    )
    workspace_max_bytes: int = Field(
        default=0, ge=0, description="Stored bytes a workspace may hold (its sessions' payload_bytes); 0 = no quota."
    )
    workspace_max_sessions: int = Field(default=0, ge=0, description="Sessions a workspace may hold; 0 = no quota.")
    workspace_usage_cache_seconds: float = Field(
        default=5.0, ge=0, le=60, description="How long a worker trusts a workspace's usage figure (the overshoot)."
    )
    retention_interval_seconds: float = Field(
        default=300, ge=0, description="How often the service deletes sessions past their retention; 0 = never."
    )
    retention_batch_size: int = Field(
        default=100, ge=1, le=10_000, description="Sessions deleted per batch, by the background and handoff prune."
    )

    # Web dashboard (/ui) -------------------------------------------------------------------------------------
    ui_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Seals the dashboard's cookies (sign-in, CSRF); unset: generated once into <data_dir>/ui-secret.",
    )
    ui_session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="How long a dashboard sign-in lasts before the key is asked again."
    )

    # Server-sent events (handoff.events) -------------------------------------------------------------------
    max_streams_per_key: int = Field(
        default=32, ge=1, description="Event streams one API key may hold open at once on a worker (429 above)."
    )
    events_queue_size: int = Field(
        default=1_000, ge=1, description="Events buffered per subscriber; a consumer further behind is disconnected."
    )
    events_heartbeat_seconds: float = Field(
        default=15, gt=0, le=15, description="Longest silence on an event stream before a comment line is sent."
    )

    # Handoff claims (handoff.claims) -----------------------------------------------------------------------
    claim_lease_seconds: int = Field(
        default=300, ge=10, le=86400, description="A claim's lease when the claim does not name one, in seconds."
    )
    claim_sweep_interval_seconds: float = Field(
        default=60,
        ge=0,
        description="How often lapsed claims are ended as expired (their replays fail, handoff.released); 0 = never.",
    )

    # Blob upload reservations (handoff.blobs.reservation) -------------------------------------------------------
    blob_reservation_lease_seconds: float = Field(
        default=300,
        ge=3,
        le=86400,
        description=(
            "How long an upload's reserved bytes count in its session without word from the upload (renewed every "
            "third of it): the bytes of an upload whose worker died come back after this long."
        ),
    )

    # Artifacts rollup (handoff.analytics.rollup) -----------------------------------------------------------
    artifacts_rollup_interval_seconds: float = Field(
        default=5,
        ge=0,
        description="How often changed sessions are folded into the artifacts analytics' day counts; 0 = never "
        "(the route stays exact, reading the changed sessions live).",
    )

    @property
    def rate_limit_policy_burst(self) -> int:
        """The burst in force: the configured one, else one second's worth of requests."""
        return self.rate_limit_burst or max(1, math.ceil(self.rate_limit))

    @field_validator("mongodb_url", mode="before")
    @classmethod
    def _check_mongodb_url(cls, value: object) -> object:
        """An empty value means the bundled server; anything else must look like a MongoDB URL (no DNS here)."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            return value
        scheme, _, rest = value.strip().partition("://")
        if scheme not in ("mongodb", "mongodb+srv") or not rest.split("/", 1)[0].rsplit("@", 1)[-1]:
            raise ValueError("must be a mongodb:// or mongodb+srv:// URL with a host")
        return value.strip()


class SettingsError(Exception):
    """A configuration value is wrong; the message names the variable in one line."""


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and explicit overrides), failing with one readable line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        foreign = {info.validation_alias for info in Settings.model_fields.values()}  # another tool's variables
        variable = field.upper() if field in foreign else f"HANDOFF_{field.upper()}"
        raise SettingsError(f"{variable}: {first['msg']}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
