"""`caviar serve`: the dashboard's web server (aiohttp). Pages are static HTML that poll the JSON
API; plotly.js is served from the installed `plotly` package (no CDN: clusters are offline).

Security: it binds 127.0.0.1 by default. On any other address a token is required (given, or
generated and printed at start), checked on every request: ``?token=`` once (then a cookie),
the cookie, or an ``X-Caviar-Token`` / ``Authorization: Bearer`` header. Without a token the
Host header must name this machine's loopback (no DNS rebinding). POSTs need an
``X-Caviar: 1`` header, which a cross-site form cannot send. Only the run directories directly
under the storage root are served, by name (`data.valid_name`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import os
import platform
import secrets
import signal
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from caviar import results
from caviar.dashboard import data
from caviar.errors import CaviarError
from caviar.storage import Location

STATIC = Path(str(resources.files("caviar.dashboard") / "static"))
PAGES = {"index": "index.html", "sweep": "sweep.html", "compare": "compare.html"}
ASSETS = {"dashboard.js": "application/javascript", "style.css": "text/css"}
COOKIE = "caviar_token"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

ROOT = web.AppKey("root", Location)
TOKEN = web.AppKey("token", str)
JOBS_ADDRESS = web.AppKey("jobs_address", str)


def plotly_js() -> Path | None:
    """plotly.min.js from the installed plotly package."""
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


# --- security --------------------------------------------------------------------------------


def _given_token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth.removeprefix("Bearer ").strip()
    return (
        request.headers.get("X-Caviar-Token")
        or request.query.get("token")
        or request.cookies.get(COOKIE)
    )


@web.middleware
async def _guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    token = request.app[TOKEN]
    if token:
        given = _given_token(request)
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            return web.Response(
                status=401, text="caviar serve: a token is needed (?token=... as printed at start)"
            )
    else:
        try:
            host = request.url.host or ""
        except ValueError:
            host = ""
        if host not in LOCAL_HOSTS:
            return web.Response(status=403, text="caviar serve: local requests only")
    if request.method not in ("GET", "HEAD") and request.headers.get("X-Caviar") != "1":
        return web.Response(status=403, text="caviar serve: missing the X-Caviar header")
    try:
        response = await handler(request)
    except data.NotFound:
        raise web.HTTPNotFound(text="no such sweep") from None
    if token and request.query.get("token") and request.cookies.get(COOKIE) != token:
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def _name(request: web.Request, key: str = "name") -> str:
    name = request.match_info.get(key) or request.query.get(key) or ""
    if not data.valid_name(name):
        raise data.NotFound(name)
    return name


# --- handlers --------------------------------------------------------------------------------


async def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def _page(which: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        if which == "sweep":
            data.run_location(request.app[ROOT], _name(request))
        return web.FileResponse(STATIC / PAGES[which], headers={"Content-Type": "text/html"})

    return handler


async def _asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    if name == "plotly.min.js":
        path = plotly_js()
        if path is None:
            raise web.HTTPNotFound(text="plotly is not installed: pip install plotly")
        return web.FileResponse(path, headers={"Cache-Control": "max-age=86400"})
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / name, headers={"Content-Type": ASSETS[name]})


async def _api_sweeps(request: web.Request) -> web.Response:
    root = request.app[ROOT]
    return _json(
        await _blocking(lambda: data.to_json({"root": root.uri, "sweeps": data.sweeps(root)}))
    )


async def _api_sweep(request: web.Request) -> web.Response:
    """The sweep's JSON, with an ETag: a poll of a sweep that did not change gets a 304."""
    root, name = request.app[ROOT], _name(request)
    etag, body = await _blocking(data.sweep_detail_json, root, name)
    if request.headers.get("If-None-Match") == f'"{etag}"':
        return web.Response(status=304, headers={"ETag": f'"{etag}"', "Cache-Control": "no-cache"})
    response = _json(body)
    response.headers["ETag"] = f'"{etag}"'
    response.headers["Cache-Control"] = "no-cache"
    return response


async def _api_importance(request: web.Request) -> web.Response:
    root, name = request.app[ROOT], _name(request)
    return _json(await _blocking(lambda: data.to_json(data.importance(root, name))))


async def _api_compare(request: web.Request) -> web.Response:
    root, a, b = request.app[ROOT], _name(request, "a"), _name(request, "b")
    return _json(await _blocking(lambda: data.to_json(data.compare(root, a, b))))


def stop_sweep(root: Location, name: str, jobs_address: str | None = None) -> tuple[int, dict]:
    """Stop a running sweep: its driver on this machine with SIGINT (as Ctrl-C: running trials
    are kept as unfinished, `caviar resume` continues them); one run by `caviar submit` through
    the Jobs API. (HTTP status, answer)."""
    loc = data.run_location(root, name)
    c = data.claim(loc)
    if c is None:
        return 409, {"stopped": False, "reason": "the sweep is not running"}
    if c["host"] == platform.node() and isinstance(c["pid"], int):
        if not c["alive"]:
            return 409, {"stopped": False, "reason": f"its driver (pid {c['pid']}) is gone"}
        os.kill(c["pid"], signal.SIGINT)
        return 202, {"stopped": True, "how": "SIGINT", "pid": c["pid"]}
    if c.get("job_id"):
        from caviar import jobs
        from caviar.errors import CaviarError

        try:
            stopped = jobs.stop(jobs_address, c["job_id"])
        except CaviarError as e:
            return 409, {"stopped": False, "reason": "; ".join(e.problems)}
        return 202, {"stopped": bool(stopped), "how": "Ray Jobs API", "job_id": c["job_id"]}
    return 409, {
        "stopped": False,
        "reason": f"its driver runs on {c['host']} (pid {c['pid']}), not this machine, and "
        "was not submitted as a Ray job; stop it there (Ctrl-C or kill -INT PID)",
    }


async def _api_stop(request: web.Request) -> web.Response:
    root, name = request.app[ROOT], _name(request)
    address = request.app[JOBS_ADDRESS] or None
    status, body = await _blocking(stop_sweep, root, name, address)
    return _json(data.to_json(body), status)


def make_app(storage: str | Location, token: str = "", jobs_address: str = "") -> web.Application:
    """The dashboard over every run directory under `storage`; with `token`, every request
    must carry it."""
    app = web.Application(middlewares=[_guard])
    app[ROOT] = storage if isinstance(storage, Location) else Location.of(storage)
    app[TOKEN] = token
    app[JOBS_ADDRESS] = jobs_address
    app.router.add_get("/", _page("index"))
    app.router.add_get("/sweep/{name}", _page("sweep"))
    app.router.add_get("/compare", _page("compare"))
    app.router.add_get("/static/{file}", _asset)
    app.router.add_get("/api/sweeps", _api_sweeps)
    app.router.add_get("/api/sweep/{name}", _api_sweep)
    app.router.add_get("/api/sweep/{name}/importance", _api_importance)
    app.router.add_post("/api/sweep/{name}/stop", _api_stop)
    app.router.add_get("/api/compare", _api_compare)
    return app


def needs_token(host: str) -> bool:
    return host not in LOCAL_HOSTS


def url(host: str, port: int, token: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def resolve_token(host: str, token: str | None) -> str:
    """The token to require: the one given; on a non-local address without one, a new one."""
    if token:
        return token
    return secrets.token_urlsafe(24) if needs_token(host) else ""


def serve(
    storage: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    jobs_address: str | None = None,
) -> None:
    """Serve until interrupted (SIGINT or SIGTERM); print the URL (with the token) once the
    socket listens. A port that cannot be had (taken, out of range) is the user's error."""
    token = resolve_token(host, token)
    app = make_app(storage, token, jobs_address or "")
    check_root(app[ROOT])
    runner = web.AppRunner(app, handle_signals=True)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(runner.setup())
        _listen(loop, runner, host, port, "--port")
        print(f"caviar dashboard of {app[ROOT].uri}: {url(host, port, token)}", flush=True)
        loop.run_forever()
    except web.GracefulExit:  # a signal (aiohttp's handler raises it)
        pass
    finally:
        loop.run_until_complete(runner.cleanup())
        loop.close()


def check_root(root: Location) -> None:
    """The dashboard shows the run directories under a storage root: a file, or a run directory
    itself (whose dashboard would be empty), is the user's error. A root that does not exist
    yet is not: sweeps run into it appear as they start."""
    parent = root.uri.rstrip("/").rsplit("/", 1)[0] or "/"
    if (root / results.SPEC_FILE).is_file():
        raise CaviarError(
            f"{root.uri}: a run directory, not a storage root; the dashboard lists the run "
            f"directories under a root: caviar serve {parent}"
        )
    if root.is_file():
        raise CaviarError(
            f"{root.uri}: a file, not a storage root; pass the folder that holds the run "
            "directories (the --storage of `caviar run`)"
        )


def _listen(
    loop: asyncio.AbstractEventLoop, runner: web.AppRunner, host: str, port: int, option: str
) -> None:
    """Start listening; a port that cannot be had (taken, out of range) is the user's error,
    named by the command-line `option` that chose it."""
    try:
        loop.run_until_complete(web.TCPSite(runner, host, port).start())
    except (OSError, OverflowError) as e:
        loop.run_until_complete(runner.cleanup())
        raise CaviarError(
            f"{option}: cannot serve on {host}:{port} ({getattr(e, 'strerror', None) or e}); "
            "pass another port"
        ) from None


class Background:
    """The dashboard served from a thread of this process (`caviar run --dashboard`)."""

    def __init__(self, storage: str, host: str, port: int, token: str | None = None) -> None:
        self.token = resolve_token(host, token)
        self.url = url(host, port, self.token)
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(make_app(storage, self.token), handle_signals=False)
        self._loop.run_until_complete(self._runner.setup())
        _listen(self._loop, self._runner, host, port, "--dashboard")
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="caviar-dashboard"
        )
        self._thread.start()

    def close(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
