"""``LocalStack``: the whole system running in this process, reachable over real HTTP.

Started with nothing configured it brings up:

- PostgreSQL: the embedded server (``pgserver``) with a fresh, migrated ``warp_demo``
  database, or the server ``DATABASE_URL`` names (migrated, its rows left alone);
- HubSpot: the project's emulator with a generated access token and client secret,
  WARP's custom properties defined, and signed webhooks pointed at the local
  ``webhook_receiver``; or the real HubSpot when ``HUBSPOT_ACCESS_TOKEN`` is set;
- the five Cloud Functions, each loaded by ``functions_framework.create_app`` exactly
  as ``functions-framework --target NAME`` loads it, on its own threaded werkzeug
  server on a free port;
- deferred work through the in-process task stand-in (or Cloud Tasks when
  ``TASKS_QUEUE`` names a queue, e.g. on the Cloud Tasks emulator);
- change capture enabled on ``accounts.customers`` and a sweep every second in a
  thread (Cloud Scheduler's every minute in production), unless configured off. On a
  database ``DATABASE_URL`` names, capture is disabled again at stop if it was off.

The functions read their configuration through ``get_settings()`` like deployed ones,
so the stack writes its settings into the environment first, then installs one engine
process-wide (``shared.engine.edge.set_engine``) that the functions and the CLI share.
``stop()`` undoes all of it, the environment included.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
import os
import secrets
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from werkzeug.serving import WSGIRequestHandler

from shared.config.settings import Settings, get_settings, reset_settings
from shared.db import Database
from shared.db.connection import embedded_database_url, url_connector
from shared.db.migrate import upgrade
from shared.errors import ConfigurationError
from shared.observability.logging import (
    LOGGER_NAMESPACE,
    CloudLoggingHandler,
    build_entry,
    configure_logging,
)
from shared.packaging import Sources

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer

    from localdev.emulator import Emulator
    from shared.engine import Engine
    from shared.hubspot import HubSpotClient
    from shared.tasks import Dispatcher

log = logging.getLogger("warp_hubspot_sync.local")


class RawTargetHandler(WSGIRequestHandler):
    """Serves the request target exactly as the client sent it, as gunicorn does.

    Python's http.server collapses a leading ``//`` of the path (gh-87389, against
    open redirects in file servers), so werkzeug's ``RAW_URI`` held ``/v1//x`` for a
    request to ``//v1//x``, and the webhook signature was checked over a URI HubSpot
    never signed: a correct delivery got 401 and one signed over the collapsed path
    200 (issue 21, item 9). Deployed, gunicorn keeps the target as sent.
    """

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        words = self.requestline.split()
        if len(words) >= 2:
            self.path = words[1]
        return True


# pgserver asks platformdirs for a runtime folder, which warns on machines without
# XDG_RUNTIME_DIR (containers); the fallback it uses is fine.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

FUNCTION_NAMES = ("webhook_receiver", "outbound_sync", "retry_worker", "reconciler", "sync_api")
WEBHOOK_PATH = "/v1/webhooks/hubspot"
DEMO_DATABASE = "warp_demo"
# The app id our emulated HubSpot app has; any positive number works locally.
LOCAL_APP_ID = 5_151_515
FUNCTIONS_DIR = Sources().functions_dir

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


@dataclass
class StackConfig:
    """Knobs of the local system. The defaults keep the demo quick and HubSpot-like."""

    # HubSpot's Professional/Enterprise burst limit (190 per 10 s); we budget below it.
    emulator_rate_limit: int = 190
    hubspot_rate_limit: int = 170
    # The deployment's default window: a lone change flushes at once anyway (leading
    # edge), and a burst pushed slowly by a busy machine still costs one flush per window.
    coalesce_delay_seconds: float = 2.0
    retry_base_seconds: float = 0.2
    retry_cap_seconds: float = 2.0
    retry_max_attempts: int = 8
    # HubSpot's 24-hour webhook retry schedule in about 4 minutes (first retry 0.24 s).
    webhook_time_scale: float = 0.003
    db_pool_size: int = 12
    # Change capture on accounts.customers, swept this often (None: no capture, no
    # sweep), so an edit made with plain SQL reaches HubSpot within about two seconds.
    sweep_every_seconds: float | None = 1.0
    # None: logs stay on stdout (serve); a path: JSON log lines go there (the demo's
    # console is for the story).
    log_file: Path | None = None
    seed: int = 7


@dataclass
class FunctionServer:
    """One function on its own HTTP server; ``loaded`` is False when its code is missing."""

    name: str
    url: str
    server: BaseWSGIServer
    thread: threading.Thread
    loaded: bool = False


class _Deferred:
    """A WSGI app filled in after the server is bound: the ports must exist before the
    settings that name them, and the functions may read settings when they load."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.app: WSGIApp | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.app is None:
            body = f'{{"error": "function {self.name} is not available in this checkout"}}'
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [body.encode()]
        return self.app(environ, start_response)


@dataclass
class StackInfo:
    """What the stack runs on, for printing (no secrets)."""

    database: str
    database_source: str
    hubspot: str
    hubspot_source: str
    tasks: str
    fresh_database: bool
    notes: list[str] = field(default_factory=list)


class LocalStack:
    """Start with ``with LocalStack(config) as stack:``; see the module docstring."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.functions: dict[str, FunctionServer] = {}
        self.emulator: Emulator | None = None
        self.database: Database | None = None
        self.hubspot: HubSpotClient | None = None
        self.dispatcher: Dispatcher | None = None
        self.engine: Engine | None = None
        self.settings: Settings | None = None
        self.info: StackInfo | None = None
        self.sync_api_token = secrets.token_urlsafe(24)
        self.cli_environment: dict[str, str] = {}
        self._saved_env: dict[str, str | None] = {}
        self._exit = contextlib.ExitStack()

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalStack:
        """Bring every part up (see the module docstring); on failure, undo what started."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop servers, emulator and task runner; restore the environment and globals."""
        self._exit.close()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        reset_settings()

    def _start(self) -> None:
        cfg = self.config
        self._route_logs()
        user_db = os.environ.get("DATABASE_URL") or None
        user_token = os.environ.get("HUBSPOT_ACCESS_TOKEN") or None

        database_url = user_db or self._fresh_embedded_database()
        for name in FUNCTION_NAMES:
            self.functions[name] = self._bind(name)
        webhook_base = self.functions["webhook_receiver"].url

        env: dict[str, str] = {
            "DATABASE_URL": database_url,
            "DB_POOL_SIZE": str(cfg.db_pool_size),
            "WEBHOOK_PUBLIC_URL": webhook_base,
            "SYNC_API_TOKEN": self.sync_api_token,
            "HUBSPOT_RATE_LIMIT": str(cfg.hubspot_rate_limit),
            "RETRY_BASE_SECONDS": str(cfg.retry_base_seconds),
            "RETRY_CAP_SECONDS": str(cfg.retry_cap_seconds),
            "RETRY_MAX_ATTEMPTS": str(cfg.retry_max_attempts),
            "COALESCE_DELAY_SECONDS": str(cfg.coalesce_delay_seconds),
            "RETRY_WORKER_URL": self.functions["retry_worker"].url,
        }
        if user_token is None:
            self.emulator = self._start_emulator(webhook_base + WEBHOOK_PATH)
            env |= {
                "HUBSPOT_BASE_URL": self.emulator.url,
                "HUBSPOT_ACCESS_TOKEN": self._emulator_token,
                "HUBSPOT_CLIENT_SECRET": self._emulator_secret,
                "HUBSPOT_APP_ID": str(self.emulator.app_id),
            }
        self._set_env(env)
        # What a CLI in another shell needs to work on this stack (the values the stack
        # chose itself; a user's own DATABASE_URL or token is already in their shell).
        chosen = {"SYNC_API_TOKEN"} | ({"DATABASE_URL"} if user_db is None else set())
        if self.emulator is not None:
            chosen |= {"HUBSPOT_BASE_URL", "HUBSPOT_ACCESS_TOKEN"}
        self.cli_environment = {name: env[name] for name in sorted(chosen)}
        reset_settings()
        self.settings = settings = get_settings()
        self.info = self._describe(settings, user_db=user_db is not None)
        self._install_engine(settings, database_url)
        self._load_functions()

    # -- parts ---------------------------------------------------------------------

    def _route_logs(self) -> None:
        """Send the JSON log lines to ``config.log_file`` when one is given."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per request
        if self.config.log_file is None:
            return
        configure_logging()
        logger = logging.getLogger(LOGGER_NAMESPACE)
        handler = _FileLinesHandler(self.config.log_file)
        previous = list(logger.handlers)
        logger.handlers = [handler]

        def restore() -> None:
            logger.handlers = previous
            handler.close()

        self._exit.callback(restore)

    def _fresh_embedded_database(self) -> str:
        """A new, empty ``warp_demo`` database on the embedded server; its URL."""
        import platformdirs

        folder = os.environ.get("EMBEDDED_DB_DIR") or str(
            Path(platformdirs.user_cache_dir("warp-hubspot-sync")) / "demo-pgdata"
        )
        server_url = embedded_database_url(folder)
        admin = url_connector(server_url)()
        try:
            admin.autocommit = True
            cursor = admin.cursor()
            # The demo's own database on the demo's own server: rebuilt each run so
            # every run tells the same story.
            cursor.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
        finally:
            admin.close()
        return urlunsplit(urlsplit(server_url)._replace(path="/" + DEMO_DATABASE))

    def _bind(self, name: str) -> FunctionServer:
        from werkzeug.serving import make_server

        deferred = _Deferred(name)
        server = make_server(
            "127.0.0.1", 0, deferred, threaded=True, request_handler=RawTargetHandler
        )
        thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name=f"fn-{name}", daemon=True
        )
        thread.start()

        def close() -> None:
            server.shutdown()
            server.server_close()

        self._exit.callback(close)
        return FunctionServer(name, f"http://127.0.0.1:{server.server_port}", server, thread)

    def _start_emulator(self, webhook_url: str) -> Emulator:
        from localdev.emulator import Emulator

        self._emulator_token = "local-" + secrets.token_urlsafe(18)
        self._emulator_secret = secrets.token_urlsafe(32)
        emulator = Emulator(
            rate_limit=self.config.emulator_rate_limit,
            app_id=LOCAL_APP_ID,
            client_secret=self._emulator_secret,
            access_token=self._emulator_token,
            webhook_url=webhook_url,
            webhook_time_scale=self.config.webhook_time_scale,
            seed=self.config.seed,
        ).start()
        self._exit.callback(emulator.stop)
        return emulator

    def _set_env(self, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _describe(self, settings: Settings, *, user_db: bool) -> StackInfo:
        tasks = (
            f"Cloud Tasks queue {settings.tasks_queue}"
            if settings.tasks_queue
            else "in-process task stand-in"
        )
        info = StackInfo(
            database=safe_url(settings.database_url or ""),
            database_source="DATABASE_URL" if user_db else "embedded PostgreSQL (pgserver)",
            hubspot=settings.hubspot_base_url,
            hubspot_source="HubSpot emulator" if self.emulator else "HUBSPOT_ACCESS_TOKEN",
            tasks=tasks,
            fresh_database=not user_db,
        )
        if user_db:
            info.notes.append("using the database DATABASE_URL names (migrated, rows kept)")
        if self.emulator is None:
            info.notes.append(
                "using the HubSpot account HUBSPOT_ACCESS_TOKEN opens: steps that need the "
                "emulator (UI edits, webhooks to this machine, outages) are left out"
            )
        return info

    def _install_engine(self, settings: Settings, database_url: str) -> None:
        from shared.engine import Engine
        from shared.engine.edge import set_engine
        from shared.hubspot import HubSpotClient
        from shared.hubspot.properties import setup_properties
        from shared.tasks import InProcessDispatcher
        from shared.tasks.dispatch import dispatcher_from_settings

        database = Database(
            url_connector(database_url, timeout=settings.db_connect_timeout_seconds),
            pool_size=settings.db_pool_size,
            description=self.info.database_source if self.info else "local",
        )
        self.database = database
        self._exit.callback(database.close)
        upgrade(database)

        client = HubSpotClient.from_settings(settings, database)
        self.hubspot = client
        self._exit.callback(client.close)
        setup_properties(client)  # WARP's custom company properties, through the API

        self.dispatcher = dispatcher_from_settings(settings)
        if isinstance(self.dispatcher, InProcessDispatcher):
            self._exit.callback(self.dispatcher.stop)
        self.engine = Engine(
            settings=settings, database=database, hubspot=client, dispatcher=self.dispatcher
        )
        set_engine(self.engine)
        self._exit.callback(set_engine, None)
        _register_task_kinds()
        if self.config.sweep_every_seconds is not None:
            self._start_capture(self.engine, self.config.sweep_every_seconds)

    def _start_capture(self, engine: Engine, every: float) -> None:
        """Enable capture and sweep every ``every`` seconds until stop."""
        from shared.capture import install
        from shared.outbound.sweep import sweep

        with engine.database.transaction() as tx:
            was_on = bool(install.installed_triggers(tx))
        install.enable(engine.database)
        if not was_on:
            self._exit.callback(install.disable, engine.database)
        stopping = threading.Event()

        def sweep_forever() -> None:
            while not stopping.wait(every):  # a schedule, like Cloud Scheduler's
                try:
                    sweep(engine)
                except Exception:  # a failed sweep is logged; the next one goes on
                    log.exception("local sweep failed")

        thread = threading.Thread(target=sweep_forever, name="sweep", daemon=True)
        thread.start()

        def stop() -> None:
            stopping.set()
            thread.join(timeout=30)

        self._exit.callback(stop)
        if self.info is not None:
            self.info.notes.append(f"change capture on; a sweep every {every:g} s")

    def _load_functions(self) -> None:
        import functions_framework

        for name, served in self.functions.items():
            source = FUNCTIONS_DIR / name / "main.py"
            if not source.is_file():
                log.warning("function missing", extra={"fields": {"function": name}})
                continue
            app = functions_framework.create_app(name, str(source))
            deferred = served.server.app
            assert isinstance(deferred, _Deferred)
            deferred.app = app
            served.loaded = True

    # -- for callers ---------------------------------------------------------------

    def url(self, name: str) -> str:
        """Base URL of function ``name``."""
        return self.functions[name].url

    def has(self, name: str) -> bool:
        """Whether function ``name`` is loaded (its code exists in this checkout)."""
        served = self.functions.get(name)
        return served is not None and served.loaded

    @property
    def webhook_url(self) -> str:
        """The URL the emulator delivers webhooks to."""
        return self.url("webhook_receiver") + WEBHOOK_PATH

    def api_headers(self) -> dict[str, str]:
        """Headers that authenticate a call to ``sync_api``."""
        return {"Authorization": f"Bearer {self.sync_api_token}"}

    def require_engine(self) -> Engine:
        """The running engine (raises if the stack is not started)."""
        if self.engine is None:
            raise ConfigurationError("the local stack is not started")
        return self.engine


class _FileLinesHandler(CloudLoggingHandler):
    """The project's JSON log lines (same entry as on stdout), appended to a file.

    A CloudLoggingHandler, so ``configure_logging`` (run again by each function as it
    loads) finds it in place and adds no second, stdout one.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = path.open("a", encoding="utf-8")
        self._lock_file = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        """Write one JSON line; a failure to format is reported, never raised."""
        try:
            line = json.dumps(build_entry(record), default=str, ensure_ascii=False)
            with self._lock_file:
                self._stream.write(line + "\n")
                self._stream.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        """Close the file."""
        with self._lock_file:
            self._stream.close()
        super().close()


def _register_task_kinds() -> None:
    """Load the task kinds the flows registered, so the stand-in can run their tasks."""
    if importlib.util.find_spec("shared.tasks.kinds") is not None:
        importlib.import_module("shared.tasks.kinds")


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for printing)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
