"""Settings: every bad value is refused with the environment variable's name."""

from __future__ import annotations

import pytest

from shared.config.settings import Settings, load_settings
from shared.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults_select_the_embedded_database() -> None:
    settings = load_settings()
    assert settings.database_mode == "embedded"
    assert settings.hubspot_base_url == "https://api.hubapi.com"
    assert settings.hubspot_rate_limit == 90


def test_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.internal:5433/warp")
    monkeypatch.setenv("INSTANCE_CONNECTION_NAME", "p:r:i")
    monkeypatch.setenv("DB_USER", "u")
    monkeypatch.setenv("DB_NAME", "warp")
    monkeypatch.setenv("DB_IAM_AUTH", "true")
    assert load_settings().database_mode == "url"


def test_environment_read_by_name_in_any_case_and_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("hubspot_rate_limit", "45")
    monkeypatch.setenv("Db_Iam_Auth", "true")
    monkeypatch.setenv("NOT_A_SETTING", "ignored")
    settings = load_settings(log_level="DEBUG")
    assert settings.hubspot_rate_limit == 45
    assert settings.db_iam_auth is True
    assert settings.log_level == "DEBUG"
    assert not hasattr(settings, "not_a_setting")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL"),
        ({"HUBSPOT_APP_ID": "twelve"}, "HUBSPOT_APP_ID"),
        ({"HUBSPOT_BASE_URL": "api.hubapi.com"}, "HUBSPOT_BASE_URL"),
        ({"WEBHOOK_PUBLIC_URL": "ftp://x"}, "WEBHOOK_PUBLIC_URL"),
        ({"INSTANCE_CONNECTION_NAME": "just-a-name"}, "INSTANCE_CONNECTION_NAME"),
        ({"INSTANCE_CONNECTION_NAME": "p:r:i"}, "DB_USER"),
        ({"DB_POOL_SIZE": "0"}, "DB_POOL_SIZE"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"TASKS_QUEUE": "q"}, "GCP_PROJECT"),
        ({"OIDC_ALLOWED_EMAILS": "serviceAccount:tasks@p.iam.gserviceaccount.com"}, "OIDC_ALLOWED"),
        ({"OIDC_ALLOWED_EMAILS": "a@p.iam.gserviceaccount.com,group:ops@x.com"}, "OIDC_ALLOWED"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigurationError, match=named):
        load_settings()


def test_secrets_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-na1-very-secret")
    monkeypatch.setenv("SYNC_API_TOKEN", "api-very-secret")
    monkeypatch.setenv("HUBSPOT_READ_ACCESS_TOKEN", "pat-na1-read-very-secret")
    settings = load_settings()
    assert "very-secret" not in repr(settings)
    assert "very-secret" not in str(settings.model_dump())
    assert settings.hubspot_access_token is not None
    assert settings.hubspot_access_token.get_secret_value() == "pat-na1-very-secret"
    assert settings.hubspot_read_access_token is not None
    assert settings.hubspot_read_access_token.get_secret_value() == "pat-na1-read-very-secret"


def test_bad_secret_value_not_echoed_in_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://user:hunter2@host/db")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)
