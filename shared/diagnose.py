"""Expected failures said in one line: the setting, its value (secrets masked), the cause, the fix.

A wrong ``DATABASE_URL``, a database that does not answer, HubSpot out of reach, a
token HubSpot refuses: these are the operator's to fix, not bugs, so the CLI and the
functions print :meth:`Problem.line` instead of a traceback (``--debug`` still shows
it). :func:`explain` is pure: it reads the exception and the settings, nothing else.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from shared.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from shared.config.settings import Settings


@dataclass(frozen=True)
class Problem:
    """One expected failure, as a person can act on it."""

    setting: str
    value: str
    cause: str
    fix: str

    def line(self) -> str:
        shown = f"{self.setting}={self.value}" if self.value else f"{self.setting} (not set)"
        return f"{shown}: {self.cause}. Fix: {self.fix}"


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def mask_secret(secret: str) -> str:
    """Enough of a token to tell which one it is, never enough to use it."""
    if len(secret) <= 8:
        return "***"
    return f"{secret[:4]}***{secret[-2:]} ({len(secret)} characters)"


def database_setting(settings: Settings) -> tuple[str, str]:
    """(the setting that selects the database, its value masked) for these settings."""
    if settings.database_mode == "url":
        return "DATABASE_URL", mask_url(settings.database_url or "")
    if settings.database_mode == "cloudsql":
        return "INSTANCE_CONNECTION_NAME", str(settings.instance_connection_name)
    folder = embedded_data_dir(settings.embedded_db_dir)
    return "DATABASE_URL", f" (not set: the embedded PostgreSQL in {folder})"


def embedded_data_dir(data_dir: str | None) -> Path:
    """Where the embedded PostgreSQL keeps its data (``EMBEDDED_DB_DIR`` or the user cache)."""
    if data_dir:
        return Path(data_dir)
    import platformdirs

    return Path(platformdirs.user_cache_dir("warp-hubspot-sync")) / "pgdata"


def explain(exc: BaseException, settings: Settings | None) -> Problem | None:
    """The :class:`Problem` ``exc`` is, or None when it is not one of these failures.

    A :class:`~shared.errors.ConfigurationError` already names its variable and value
    (``shared/config/settings.py``): its own message is the line.
    """
    from shared.hubspot.errors import AuthError, ConnectionFailed, Timeout

    if isinstance(exc, DatabaseUnavailableError) and settings is not None:
        setting, value = database_setting(settings)
        cause, fix = _database_cause(exc.__cause__, setting)
        return Problem(setting, value.strip(), cause, fix)
    if isinstance(exc, ConnectionFailed | Timeout) and settings is not None:
        return Problem(
            "HUBSPOT_BASE_URL",
            settings.hubspot_base_url,
            f"HubSpot cannot be reached ({exc.loggable()})",
            "check the URL and the network path to it (proxy, firewall, DNS); locally, start "
            "`hubspot-sync emulator` or `hubspot-sync serve` and use the URL it prints",
        )
    if isinstance(exc, AuthError) and settings is not None:
        token = settings.hubspot_access_token
        return Problem(
            "HUBSPOT_ACCESS_TOKEN",
            mask_secret(token.get_secret_value()) if token else "",
            f"HubSpot refused the token (HTTP {exc.status or 401}: expired, revoked, or "
            "missing a scope)",
            "create a private-app token with the crm.objects.companies and crm.objects.contacts "
            "read and write scopes (and crm.schemas.companies.write for setup-properties) and "
            "set it (also HUBSPOT_READ_ACCESS_TOKEN if you use one)",
        )
    return None


# What each function needs from the settings to do its job at all (deployed).
_NEEDS_HUBSPOT_TOKEN = frozenset({"outbound_sync", "reconciler", "retry_worker", "sync_api"})


def startup_problems(function: str, settings: Settings, *, deployed: bool) -> list[Problem]:
    """What keeps ``function`` from working with these settings (pure; empty: nothing).

    ``deployed``: running on Cloud Run, where the embedded database and the request's
    own URL are never right. Locally (tests, ``serve``) those defaults are the point.
    """
    problems = []
    if deployed and settings.database_mode == "embedded":
        problems.append(
            Problem(
                "DATABASE_URL",
                "",
                "no database is configured, and a deployed function cannot use the embedded "
                "PostgreSQL",
                "set DATABASE_URL, or INSTANCE_CONNECTION_NAME with DB_USER and DB_NAME "
                "(terraform/functions.tf sets them)",
            )
        )
    if deployed and function == "webhook_receiver":
        if settings.hubspot_client_secret is None:
            problems.append(
                Problem(
                    "HUBSPOT_CLIENT_SECRET",
                    "",
                    "webhook signatures cannot be checked: every delivery is refused (401)",
                    "set it to the HubSpot app's client secret (its Secret Manager secret)",
                )
            )
        if not settings.webhook_public_url:
            problems.append(
                Problem(
                    "WEBHOOK_PUBLIC_URL",
                    "",
                    "behind Cloud Run the request's own URL differs from the one HubSpot "
                    "signed, so every delivery would fail its signature check (401)",
                    "set it to the scheme and host (and any prefix) of the target URL in "
                    "the HubSpot app's webhook settings, e.g. https://sync.example.com",
                )
            )
    if deployed and function in _NEEDS_HUBSPOT_TOKEN and settings.hubspot_access_token is None:
        problems.append(
            Problem(
                "HUBSPOT_ACCESS_TOKEN",
                "",
                "every HubSpot call would be refused",
                "set it to the private app's access token (its Secret Manager secret)",
            )
        )
    return problems


def explain_line(exc: BaseException) -> str | None:
    """:func:`explain` with the process's settings, as one line (None: not an expected failure)."""
    from shared.config import get_settings
    from shared.errors import ConfigurationError

    try:
        settings = get_settings()
    except ConfigurationError:
        settings = None
    problem = explain(exc, settings)
    return None if problem is None else problem.line()


def _database_cause(cause: BaseException | None, setting: str) -> tuple[str, str]:
    """(what went wrong, how to fix it) for the exception under a failed connect."""
    info = cause.args[0] if cause is not None and cause.args else None
    if isinstance(info, dict) and "C" in info:  # pg8000: the server answered and refused
        code = str(info["C"])
        if code == "3D000":
            return (
                "the server has no such database",
                f"create it (`createdb`) or correct the database name in {setting}",
            )
        if code in ("28P01", "28000"):
            return (
                "the server refused the user or password",
                f"check the user and password in {setting} (or the secret it comes from)",
            )
        return f"the server refused the connection (SQLSTATE {code})", f"check {setting}"
    root = cause.__cause__ or cause.__context__ if cause is not None else None
    if isinstance(root, ConnectionRefusedError):
        return (
            "nothing listens at that host and port (connection refused)",
            f"start PostgreSQL there or correct the host and port in {setting}",
        )
    if isinstance(root, socket.gaierror):
        return "the host name does not resolve", f"correct the host in {setting}"
    if isinstance(root, TimeoutError):
        return (
            "no answer from the database host within DB_CONNECT_TIMEOUT_SECONDS",
            f"check the host and port in {setting} and that the network lets you reach it",
        )
    return (
        "the database cannot be reached",
        f"check {setting} and that the database runs and is reachable from here",
    )
