"""``create_app(settings)``: the jinad FastAPI application. Nothing happens at import time.

The lifespan opens the store, builds the runtimes, reconciles what the store remembers with what
is really running (re-adopting live processes, marking vanished ones), then starts the background
reconciler. Errors leave as ``{"detail": ...}`` through the single translation below.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import DaemonError, JinadFabError
from . import gc
from .api.routes import deployments, flows, health, logs, pods, token, workspaces
from .auth import Guard, HostPolicy
from .manager import Manager
from .runtimes.base import Runtime
from .settings import DaemonSettings
from .store import Store

log = logging.getLogger("jinad")

RUNTIME_MODULES = {
    "process": ("jinad_fab.daemon.runtimes.process", "ProcessRuntime"),
    "docker": ("jinad_fab.daemon.runtimes.docker", "DockerRuntime"),
}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("jinad-fab")
    except Exception:
        return "0+unknown"


def load_runtimes(settings: DaemonSettings) -> dict[str, Runtime]:
    """Every runtime that imports and says it is available on this host."""
    out: dict[str, Runtime] = {}
    for name, (module, cls_name) in RUNTIME_MODULES.items():
        try:
            cls = getattr(importlib.import_module(module), cls_name)
            rt = cls.from_settings(settings)
            if rt.available():
                out[name] = rt
        except Exception as exc:  # an optional runtime (docker) missing must not stop the daemon
            log.info("runtime %s unavailable: %s", name, exc)
    return out


def detect_gpus() -> list[dict]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        idx, name, mem = (x.strip() for x in line.split(",", 2))
        gpus.append({"index": int(idx), "name": name, "memory_mb": int(float(mem))})
    return gpus


def _daemon_id(settings: DaemonSettings) -> str:
    path = settings.home / "daemon-id"
    if path.exists():
        return path.read_text().strip()
    did = f"jinad-{uuid.uuid4().hex[:12]}"
    path.write_text(did + "\n")
    return did


def _offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from assets shipped by the ``fastapi-offline`` package:
    no CDN, so they work on a host without Internet access."""
    import importlib.util
    import pathlib

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        log.warning("fastapi-offline is not installed: /docs and /redoc are not served")
        return
    app.mount("/static-docs", StaticFiles(directory=pathlib.Path(spec.origin).parent / "static"), name="static-docs")

    # the pages may load nothing from elsewhere (ReDoc would fetch its logo from a CDN)
    csp = {"content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                      "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:"}

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui():
        return _with_headers(csp, get_swagger_ui_html(openapi_url="/openapi.json", title="jinad - API",
                                   swagger_js_url="/static-docs/swagger-ui-bundle.js",
                                   swagger_css_url="/static-docs/swagger-ui.css",
                                   swagger_favicon_url="data:,"))

    @app.get("/redoc", include_in_schema=False)
    async def redoc():
        return _with_headers(csp, get_redoc_html(openapi_url="/openapi.json", title="jinad - API",
                              redoc_js_url="/static-docs/redoc.standalone.js", redoc_favicon_url="data:,",
                              with_google_fonts=False))


def _with_headers(headers: dict[str, str], response):
    response.headers.update(headers)
    return response


_STATUSES = {
    "400": "bad input (a path outside the workspace, an unacceptable upload or YAML), naming what",
    "401": "no bearer token (send 'Authorization: Bearer <token>')",
    "403": "a wrong token, or a refused Host or Origin header (the detail names it)",
    "404": "no object with that id",
    "409": "the object or its workspace is in the wrong state, or it failed to start",
    "413": "the upload is too large",
    "503": "too many connections (--max-connections) or the build queue is full",
}


def _complete_openapi(app: FastAPI) -> None:
    """The OpenAPI document declares what the middleware and handlers really answer: the bearer
    scheme on every route but /alive, every error status with its ``{"detail": ...}`` body, and
    ``runtime`` as an enum of what this host has."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        comps = schema.setdefault("components", {})
        comps.setdefault("schemas", {})["ErrorBody"] = {
            "title": "ErrorBody", "type": "object", "required": ["detail"],
            "properties": {"detail": {"description": "a message, or {message, id, log_tail} about one object"}}}
        comps.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
        manager = getattr(app.state, "manager", None)
        runtimes = sorted(manager.runtimes) if manager is not None else sorted(RUNTIME_MODULES)
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, ops in schema.get("paths", {}).items():
            for op in ops.values():
                codes = ["403", "503"] if path == "/alive" else list(_STATUSES)
                if path != "/alive":
                    op["security"] = [{"bearer": []}]
                for code in codes:
                    op.setdefault("responses", {}).setdefault(code, {"description": _STATUSES[code],
                                                                      "content": error})
                if "422" in op.get("responses", {}):  # ours say why in a sentence, FastAPI's in a list
                    op["responses"]["422"] = {"description": "validation failed: what, where and why",
                                              "content": error}
                for param in op.get("parameters", []):
                    if param.get("name") == "runtime":
                        param["schema"] = {"anyOf": [{"type": "string", "enum": runtimes}, {"type": "null"}],
                                           "title": "Runtime", "description": "one of this host's runtimes"}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _path_methods(app: FastAPI) -> list[tuple[re.Pattern[str], set[str]]]:
    """Each documented path as a regular expression, with its methods (computed once)."""
    cached = getattr(app.state, "path_methods", None)
    if cached is None:
        cached = []
        for path, ops in app.openapi().get("paths", {}).items():
            pattern = re.compile(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path)))
            cached.append((pattern, {m.upper() for m in ops}))
        app.state.path_methods = cached
    return cached


def prepare_home(settings: DaemonSettings) -> str:
    """Create the home (0700: it holds the token, the database and the logs) and return the token."""
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.home.chmod(0o700)
    return settings.resolve_token()


def _build_routes(app: FastAPI) -> None:
    """Have FastAPI resolve every included router's routes now. It does so on the first request a
    router matches, which made the first create (or delete, or list) after a daemon start pay
    tens of milliseconds more than the next. ``matches`` is Starlette's route interface."""
    scope = {"type": "http", "method": "GET", "path": "/", "root_path": "", "headers": [], "query_string": b""}
    for route in app.router.routes:
        route.matches(scope)


def create_app(settings: DaemonSettings) -> FastAPI:
    """The app, behind the :class:`~jinad_fab.daemon.auth.Guard` (Host, Origin, token). Nothing is
    written here: the lifespan creates the home and, unless a token was given, ``<home>/token``."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.token = prepare_home(settings)
        store = Store(settings.home / "jinad.db")
        runtimes = await asyncio.to_thread(load_runtimes, settings)
        manager = Manager(settings, store, runtimes)
        app.state.manager = manager
        app.state.daemon_id = _daemon_id(settings)
        app.state.gpus = await asyncio.to_thread(detect_gpus)
        counts = await manager.recover()
        log.info("recovered: %s", counts)
        app.state.recovered = counts
        _build_routes(app)
        await anyio.to_thread.run_sync(int)  # Starlette runs sync dependencies there: load its backend now
        reconciler = asyncio.create_task(gc.reconcile_forever(manager, settings.reconcile_interval))
        try:
            yield
        finally:
            reconciler.cancel()
            manager.close()
            store.close()

    app = FastAPI(title="jinad", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Per-host daemon: workspaces, Flows, Pods, Peas and their logs.")
    _offline_docs(app)
    _complete_openapi(app)
    app.state.settings = settings
    app.state.version = _version()
    app.state.started = time.monotonic()
    app.state.gpus = []
    app.state.token = None  # set by the lifespan; until then nothing is served
    app.state.previous_token = None  # the token PUT /token replaced, until DELETE /token/previous

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette answers 405 with the methods of the first route matching the path only; the
        ``Allow`` header lists every method the path has (as the OpenAPI document says)."""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            methods = set(headers.get("Allow", "").replace(" ", "").split(",")) - {""}
            for pattern, more in _path_methods(app):
                if pattern.fullmatch(request.url.path):
                    methods |= more
            headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers or None)

    @app.exception_handler(JinadFabError)
    async def _our_error(request: Request, exc: JinadFabError) -> JSONResponse:
        """Every error of ours answers with its class's status; its detail is the daemon's message
        (or, for an error about one object, ``{"message", "id", "log_tail"}``)."""
        status = type(exc).http_status
        if status >= 500 and not isinstance(exc, DaemonError):
            return await _internal(request, exc)  # a failure of ours, not a refusal: log it, say little
        detail = exc.detail if isinstance(exc, DaemonError) else str(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    app.include_router(health.router)
    app.include_router(workspaces.router)
    app.include_router(flows.router)
    app.include_router(deployments.router)
    app.include_router(pods.pods)
    app.include_router(pods.peas)
    app.include_router(logs.router)
    app.include_router(token.router)
    scheme = "https" if settings.tls_certfile else "http"
    hosts = HostPolicy(settings.host, [*settings.allowed_hosts, *filter(None, [settings.advertise_host])])
    app.add_middleware(Guard, token=lambda: app.state.token, previous=lambda: app.state.previous_token, hosts=hosts,
                       origins=settings.allowed_origins, scheme=scheme)
    return app
