"""Settings come from ``HANDOFF_*`` variables; a bad value fails with one line that names the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from handoff.config import KIB, MIB, Settings, SettingsError, get_settings, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``HANDOFF_*`` variable of the surrounding shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("HANDOFF_"):
            monkeypatch.delenv(name)


def test_defaults_match_the_contract() -> None:
    settings = load_settings()

    assert settings.mongodb_url is None
    assert settings.database == "handoff"
    assert settings.log_level == "INFO"
    assert settings.max_body_bytes == 1 * MIB
    assert settings.max_payload_bytes == 64 * KIB
    assert settings.max_text_chars == 10_000
    assert settings.max_path_chars == 1_024
    assert settings.max_session_bytes == 1024 * MIB  # api.md, "Sessions without a size limit": 1 GiB
    assert (settings.page_entries, settings.page_bytes) == (500, 256 * KIB)
    assert 0 < settings.api_key_cache_seconds <= 5
    assert settings.idempotency_ttl_hours >= 24


def test_default_data_dir_is_the_users_data_directory() -> None:
    data_dir = load_settings().data_dir

    assert data_dir.is_absolute()
    assert data_dir.name == "handoff"


def test_values_are_read_from_handoff_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HANDOFF_MONGODB_URL", "mongodb://db.example:27017/?replicaSet=rs0")
    monkeypatch.setenv("HANDOFF_DATABASE", "handoff_staging")
    monkeypatch.setenv("HANDOFF_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HANDOFF_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("HANDOFF_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("HANDOFF_API_KEY_CACHE_SECONDS", "0")

    settings = load_settings()

    assert settings.mongodb_url == "mongodb://db.example:27017/?replicaSet=rs0"
    assert settings.database == "handoff_staging"
    assert settings.data_dir == tmp_path
    assert settings.log_level == "DEBUG"
    assert settings.max_body_bytes == 2048
    assert settings.api_key_cache_seconds == 0


def test_variables_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE", "not_ours")
    monkeypatch.setenv("HANDOFF_SOMETHING_UNKNOWN", "whatever")

    assert load_settings().database == "handoff"


def test_explicit_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDOFF_DATABASE", "from_env")

    assert load_settings(database="from_code").database == "from_code"


def test_settings_are_immutable() -> None:
    settings = load_settings()

    with pytest.raises(ValueError, match="frozen"):
        settings.database = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HANDOFF_MAX_BODY_BYTES", "lots"),
        ("HANDOFF_MAX_BODY_BYTES", "10"),  # below the 1 KiB floor
        ("HANDOFF_LOG_LEVEL", "LOUD"),
        ("HANDOFF_DATABASE", "no/slashes here"),
        ("HANDOFF_DATABASE", ""),
        ("HANDOFF_API_KEY_CACHE_SECONDS", "60"),  # a revocation must take effect within 5 s
        ("HANDOFF_API_KEY_CACHE_SECONDS", "-1"),
        ("HANDOFF_SERVER_SELECTION_TIMEOUT_MS", "0"),
        ("HANDOFF_IDEMPOTENCY_TTL_HOURS", "1"),  # kept at least 24 hours
        ("HANDOFF_MAX_SESSION_BYTES", "-1"),  # 0 turns the cap off; below is meaningless
        ("HANDOFF_PAGE_ENTRIES", "1"),  # a page holds at least two entries
        ("HANDOFF_PAGE_BYTES", str(8 * MIB)),  # a page stays far below MongoDB's document limit
    ],
)
def test_bad_value_fails_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message
    assert len(message) > len(variable) + 2


@pytest.mark.parametrize("url", ["http://db.example:27017", "localhost:27017", "mongodb://"])
def test_url_that_is_not_a_mongodb_url_names_the_variable(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("HANDOFF_MONGODB_URL", url)

    with pytest.raises(SettingsError, match=r"^HANDOFF_MONGODB_URL: "):
        load_settings()


def test_bad_override_names_the_variable_too() -> None:
    with pytest.raises(SettingsError, match=r"^HANDOFF_MAX_TEXT_CHARS: "):
        load_settings(max_text_chars=0)


def test_process_settings_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    try:
        monkeypatch.setenv("HANDOFF_DATABASE", "first")
        first = get_settings()
        monkeypatch.setenv("HANDOFF_DATABASE", "second")

        assert get_settings() is first
        assert first.database == "first"
    finally:
        get_settings.cache_clear()


def test_settings_built_directly_skip_the_friendly_wrapper_but_validate() -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        Settings(max_body_bytes=1)
