"""Every environment variable the service reads, in one pydantic model.

Field ``foo_bar`` is read from ``FOO_BAR`` (any case). Reading the environment is a
dozen lines here rather than pydantic-settings: every setting is a scalar, and that
package's import (all its sources, dotenv's parser) cost a function's cold start about
half of a bare functions-framework import (bench/cold_start.py).

A wrong or missing value fails at start with a :class:`ConfigurationError`
that names the environment variable, never the Python field. Secrets are
``SecretStr`` so they never appear in a repr, a log line or an error.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.errors import ConfigurationError

DEFAULT_HUBSPOT_BASE_URL = "https://api.hubapi.com"
_EMAIL = re.compile(r"[^@\s:,]+@[^@\s:,]+\.[^@\s:,]+")


class Settings(BaseModel):
    """The service configuration. Field ``foo_bar`` is read from ``FOO_BAR``."""

    model_config = ConfigDict(
        extra="ignore",
        validate_default=True,
        hide_input_in_errors=True,
    )

    # --- database -------------------------------------------------------------------
    database_url: str | None = Field(
        None, description="postgresql:// URL; wins over Cloud SQL and the embedded database"
    )
    instance_connection_name: str | None = Field(
        None, description="Cloud SQL instance as project:region:instance"
    )
    db_user: str | None = Field(None, description="Cloud SQL user (IAM: SA email without suffix)")
    db_name: str | None = Field(None, description="Cloud SQL database name")
    db_password: SecretStr | None = Field(None, description="Cloud SQL password (not with IAM)")
    db_iam_auth: bool = Field(False, description="Cloud SQL automatic IAM database auth")
    db_ip_type: Literal["public", "private", "psc"] = Field(
        "public", description="Cloud SQL IP type the connector uses"
    )
    db_pool_size: int = Field(4, ge=1, le=50, description="connections kept per process")
    db_connect_timeout_seconds: float = Field(10.0, gt=0, le=120)
    embedded_db_dir: str | None = Field(
        None, description="data folder of the embedded PostgreSQL (default: per-user cache)"
    )

    # --- HubSpot ----------------------------------------------------------------------
    hubspot_access_token: SecretStr | None = Field(
        None,
        description="private app token (OAuth tokens expire and are not refreshed); makes"
        " every write (and every read without HUBSPOT_READ_ACCESS_TOKEN)",
    )
    hubspot_read_access_token: SecretStr | None = Field(
        None, description="optional private app token with read scopes only; makes every read"
    )
    hubspot_base_url: str = Field(DEFAULT_HUBSPOT_BASE_URL, description="HubSpot API base URL")
    hubspot_client_secret: SecretStr | None = Field(
        None, description="app client secret; key of webhook signatures"
    )
    hubspot_app_id: int | None = Field(None, ge=1, description="our HubSpot app id (echo filter)")
    hubspot_connect_timeout_seconds: float = Field(5.0, gt=0, le=60)
    hubspot_read_timeout_seconds: float = Field(20.0, gt=0, le=300)
    hubspot_rate_limit: int = Field(
        90, ge=1, description="requests per window we allow ourselves (90 % of 100 per 10 s)"
    )
    hubspot_rate_window_ms: int = Field(10_000, ge=100)
    hubspot_search_rate_per_second: float = Field(4.0, gt=0)
    hubspot_read_concurrency: int = Field(
        4, ge=1, le=16, description="batch reads of one sync in flight at once (≤ DB_POOL_SIZE)"
    )
    hubspot_daily_budget: int = Field(
        237_500, ge=1, description="daily request budget, below HubSpot's daily cap"
    )

    # --- webhooks ---------------------------------------------------------------------
    webhook_public_url: str | None = Field(
        None, description="public base URL HubSpot calls; signed URI = this + path + query"
    )
    webhook_accept_v1: bool = Field(False, description="accept v1 signatures when v3 is absent")
    webhook_max_body_bytes: int = Field(1_048_576, ge=1024)
    webhook_source_failure_limit: int = Field(
        20, ge=1, description="bad signatures from one source before it gets 429 (per instance)"
    )
    webhook_source_failure_window_seconds: float = Field(
        60.0, gt=0, description="window of WEBHOOK_SOURCE_FAILURE_LIMIT; also the longest 429"
    )
    webhook_time_budget_seconds: float = Field(
        3.0, gt=0, description="inline processing budget before handing a batch to a task"
    )

    # --- management API ---------------------------------------------------------------
    sync_api_token: SecretStr | None = Field(None, description="bearer token for sync_api")
    metrics_token: SecretStr | None = Field(
        None, description="bearer token for /metrics (none: /metrics is open)"
    )

    # --- Google Cloud -----------------------------------------------------------------
    gcp_project: str | None = Field(None, description="project id (trace ids, Cloud Tasks)")
    gcp_region: str | None = Field(None, description="region of the Cloud Tasks queue")
    tasks_queue: str | None = Field(None, description="Cloud Tasks queue; unset: in-process")
    tasks_service_account: str | None = Field(None, description="SA whose OIDC token tasks carry")
    retry_worker_url: str | None = Field(None, description="URL Cloud Tasks calls")
    cloud_tasks_emulator_host: str | None = Field(
        None, description="host:port of gcloud-tasks-emulator (tests, local runs)"
    )
    oidc_audience: str | None = Field(
        None, description="expected audience of Google-signed tokens on internal functions"
    )
    oidc_allowed_emails: str | None = Field(
        None, description="comma-separated service accounts allowed to call internal functions"
    )
    google_certs_url: str = Field(
        "https://www.googleapis.com/oauth2/v1/certs",
        description="where Google's token-signing certificates are fetched",
    )
    pubsub_topic: str | None = Field(None, description="WARP's customer-changes topic (publisher)")

    # --- retries and batching ---------------------------------------------------------
    retry_base_seconds: float = Field(2.0, gt=0)
    retry_cap_seconds: float = Field(600.0, gt=0)
    retry_max_attempts: int = Field(
        8, ge=1, le=100, description="deliveries of one task (a flush, a batch) before a queue row"
    )
    retry_window_seconds: float = Field(
        86_400.0,
        gt=0,
        description="how long a queue row's retryable failures keep being retried (HubSpot "
        "retries webhooks for 24 h); after it the row is FAILED",
    )
    coalesce_delay_seconds: float = Field(2.0, ge=0)
    deleted_customer_status: str = Field(
        "CLOSED", description="warp_status given to the company of a deleted customer"
    )

    # --- reconciliation ---------------------------------------------------------------
    reconcile_time_budget_seconds: float = Field(
        1500.0,
        gt=0,
        description="work per reconciler invocation before a continuation task takes over"
        " (below the 30-minute Scheduler and Cloud Tasks deadlines)",
    )
    reconcile_stale_seconds: float = Field(
        900.0, gt=0, description="a RUNNING run silent this long is resumed or marked FAILED"
    )
    reconcile_overlap_seconds: float = Field(
        600.0, ge=0, description="INCREMENTAL runs look back this much before the last run"
    )
    reconcile_window: int = Field(
        2_000,
        ge=1,
        le=10_000,
        description="linked customers per reconciliation transaction (reads and writes still"
        " go 100 per call; a larger window fills batch updates with sparse drift)",
    )

    # --- security and logs ------------------------------------------------------------
    encryption_key: SecretStr | None = Field(
        None, description="base64 AES-256 key for sensitive values in the sync log"
    )
    encryption_key_id: str = Field("k1", description="id stored beside ciphertexts (rotation)")
    encryption_old_keys: SecretStr | None = Field(
        None, description="id:base64,... older keys still used to open sealed values"
    )
    sensitive_columns: str = Field(
        "contact,credit_limit,current_balance,prepaid_balance",
        description="WARP columns whose values are sealed in the sync log",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        if not parts.hostname and "host=" not in (parts.query or ""):
            raise ValueError("must name a host")
        return value

    @field_validator("hubspot_base_url", "webhook_public_url", "retry_worker_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL with a host")
        return value.rstrip("/")

    @field_validator("oidc_allowed_emails")
    @classmethod
    def _emails(cls, value: str | None) -> str | None:
        # Tokens carry a bare address; an IAM member string ("serviceAccount:x@y") or a
        # group would never match, so such a list would refuse its own callers silently.
        for entry in (value or "").split(","):
            entry = entry.strip()
            if entry and not _EMAIL.fullmatch(entry):
                raise ValueError(
                    "must be comma-separated e-mail addresses of service accounts"
                    " (no serviceAccount:/group: prefix)"
                )
        return value

    @field_validator("instance_connection_name")
    @classmethod
    def _instance_name(cls, value: str | None) -> str | None:
        if value and value.count(":") != 2:
            raise ValueError("must be project:region:instance")
        return value or None

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.instance_connection_name and not self.database_url:
            missing = [n for n in ("db_user", "db_name") if not getattr(self, n)]
            if missing:
                raise ValueError(
                    "INSTANCE_CONNECTION_NAME needs " + " and ".join(m.upper() for m in missing)
                )
            if not self.db_iam_auth and self.db_password is None:
                raise ValueError("INSTANCE_CONNECTION_NAME needs DB_PASSWORD or DB_IAM_AUTH=true")
        if self.tasks_queue and not (
            self.gcp_project and self.gcp_region and self.retry_worker_url
        ):
            raise ValueError("TASKS_QUEUE needs GCP_PROJECT, GCP_REGION and RETRY_WORKER_URL")
        if self.retry_cap_seconds < self.retry_base_seconds:
            raise ValueError("RETRY_CAP_SECONDS must not be below RETRY_BASE_SECONDS")
        return self

    @property
    def database_mode(self) -> Literal["url", "cloudsql", "embedded"]:
        """Which of the three ways to connect these settings select."""
        if self.database_url:
            return "url"
        if self.instance_connection_name:
            return "cloudsql"
        return "embedded"

    @property
    def allowed_oidc_emails(self) -> frozenset[str]:
        """The service accounts ``OIDC_ALLOWED_EMAILS`` names."""
        raw = self.oidc_allowed_emails or ""
        return frozenset(e.strip() for e in raw.split(",") if e.strip())


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings' raw values in ``environ``: ``FOO_BAR`` (any case) for field ``foo_bar``."""
    by_name = {key.lower(): value for key, value in environ.items()}
    return {name: by_name[name] for name in Settings.model_fields if name in by_name}


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus explicit overrides) or fail naming each bad variable."""
    try:
        return Settings.model_validate({**from_environment(os.environ), **overrides})
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
        name = loc[0].upper() if loc else ""
        message = err.get("msg", "invalid").removeprefix("Value error, ")
        shown = _shown_value(loc[0], err.get("input")) if loc else ""
        problems.append(f"{name}{shown}: {message}" if name else message)
    return "invalid configuration: " + "; ".join(problems)


def _shown_value(field: str, value: object) -> str:
    """`` (was 'value')`` for a refused value a person may see; secrets never, URLs masked."""
    info = Settings.model_fields.get(field)
    if info is None or info.annotation in (SecretStr, SecretStr | None) or value is None:
        return ""
    text = str(value)
    if field.endswith("_url"):
        from shared.diagnose import mask_url

        text = mask_url(text)
    return f" (was {text[:80]!r})"


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once (functions reuse them across invocations)."""
    return load_settings()


def reset_settings() -> None:
    """Forget the cached settings so the next ``get_settings()`` reads the environment again."""
    get_settings.cache_clear()
