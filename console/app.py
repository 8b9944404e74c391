"""The web console for support and on-call staff: delivery and open rates, vendor and stream health, one pin's or
one message's story, test pushes, the weekly report.

    GET  /                              the overview page (static/index.html)
    GET  /diagnose                      the diagnosis page (static/diagnose.html)
    GET  /health                        {"ok": true}
    GET  /api/overview?hours=24&app=    hourly accepted, delivered and opened by vendor and brand (ClickHouse)
    GET  /api/health                    {"vendors": [...], "stream": `pushpipe status --json`} (Prometheus)
    GET  /api/pins/<app>/<pin>          a pin's story (support/diagnose.py)
    GET  /api/messages/<app>/<msg>      a message's story
    POST /api/test-push                 {"app", "pin"} or {"app", "token"}: sends a test push (support/testpush.py)
    GET  /api/test-push/<app>/<msg>     where that test push is now (?target=<token>&target=...: the tokens it went to)
    GET  /report/week.png?app=          the weekly report (support/report.py)
    GET  /static/chart.umd.js           Chart.js from the download cache (infra/chartjs.py)

Every error is JSON {"error": "<plain words>"}: 400 a bad parameter, 404 nothing known, 502 a service that did not
answer (named, its URL without password); never a stack trace or an HTML page. The pages load nothing from elsewhere.
"""
from __future__ import annotations

import decimal
import logging
import re
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pushpipe.config import Settings, masked_url
from pushpipe.console.sources import Sources, Unavailable
from pushpipe.infra import chartjs
from pushpipe.schemas import keys
from pushpipe.support import diagnose

STATIC = Path(__file__).parent / "static"
DEFAULT_HOURS, MAX_HOURS = 24, 720
MAX_BODY_BYTES = 16 * 1024
MAX_TARGETS = 1000  # tokens a test push's progress is asked for
# the pages run only their own files: no inline script, nothing from another origin
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
log = logging.getLogger("pushpipe.console")
Handler = Callable[[Request], Awaitable[Response]]


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class JSON(Response):
    """JSON through orjson: a NaN is null, datetimes are ISO strings, dataclasses their fields."""
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_plain, option=orjson.OPT_NON_STR_KEYS)


def _plain(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def error(status: int, message: str) -> Response:
    return JSON({"error": message}, status, headers={"Cache-Control": "no-store"})


def failure(failed: Exception) -> tuple[int, str]:
    """The HTTP status and plain words of what went wrong; a bug is logged, never shown."""
    if isinstance(failed, Refused):
        return failed.status, failed.message
    if isinstance(failed, Unavailable):
        return 502, str(failed)
    if isinstance(failed, diagnose.NotFound):
        return 404, str(failed) or "nothing is known of it"
    if isinstance(failed, ValueError):
        return 400, str(failed)
    if isinstance(failed, (ConnectionError, TimeoutError)):
        return 502, f"a service the console reads did not answer ({type(failed).__name__})"
    return 500, f"the console failed ({type(failed).__name__}); its log has the details"


def answered(handler: Handler) -> Handler:
    """handler, with every failure answered as {"error": ...}."""
    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as failed:
            status, message = failure(failed)
            if status >= 500:
                trace = "" if status != 500 else "\n" + "".join(traceback.format_exception(failed))
                log.warning("%s %s: %s%s", request.method, handler.__name__, message, masked_url(trace))  # not the path: it holds ids
            return error(status, message)
    return answer


def _app(value: str) -> str:
    keys.check_app_id(value)
    return value


def _optional_app(request: Request) -> str | None:
    value = request.query_params.get("app", "").strip()
    return _app(value) if value else None


def _hours(request: Request) -> int:
    text = request.query_params.get("hours", str(DEFAULT_HOURS)).strip()
    if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= MAX_HOURS:
        raise Refused(400, f"hours must be a whole number from 1 to {MAX_HOURS}, not {text[:20]!r}")
    return int(text)


def _data(content: Any) -> Response:
    return JSON(content, headers={"Cache-Control": "no-store"})


class Console:
    def __init__(self, settings: Settings, sources: Sources) -> None:
        self.settings, self.sources = settings, sources

    async def overview(self, request: Request) -> Response:
        hours, app = _hours(request), _optional_app(request)
        return _data(await run_in_threadpool(self.sources.overview, hours, app))

    async def health(self, request: Request) -> Response:
        vendors = await run_in_threadpool(self.sources.vendor_health)
        return _data({"vendors": vendors, "stream": await run_in_threadpool(self.sources.stream_health)})

    async def pin_story(self, request: Request) -> Response:
        app, pin = _app(request.path_params["app"]), request.path_params["pin"]
        keys.check_pin(pin)
        return _data(await run_in_threadpool(self.sources.pin_story, app, pin))

    async def message_story(self, request: Request) -> Response:
        app, msg = _app(request.path_params["app"]), request.path_params["msg"]
        keys.check_msg_id(msg)
        return _data(await run_in_threadpool(self.sources.message_story, app, msg))

    async def test_push(self, request: Request) -> Response:
        app, pin, token = await _test_push_target(request)
        return _data(await run_in_threadpool(lambda: self.sources.test_push(app, pin=pin, token=token)))

    async def test_push_progress(self, request: Request) -> Response:
        app, msg, targets = _app(request.path_params["app"]), request.path_params["msg"], request.query_params.getlist("target")
        keys.check_msg_id(msg)
        if len(targets) > MAX_TARGETS:
            raise Refused(400, f"at most {MAX_TARGETS} targets, not {len(targets)}")
        for token in targets:
            keys.check_token(token, "target")
        return _data(await run_in_threadpool(self.sources.test_push_progress, app, msg, targets or None))

    async def week_report(self, request: Request) -> Response:
        app = _optional_app(request)
        png = await run_in_threadpool(self.sources.week_report, app)
        if not png.is_file():
            raise Unavailable("the weekly report was not written: its PNG is missing")
        return FileResponse(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def chart_js(self, request: Request) -> Response:
        script = chartjs.script(self.settings)
        if not script.is_file():
            return error(404, f"Chart.js {chartjs.VERSION} is not in the download cache: `pushpipe up` downloads it")
        return FileResponse(script, media_type="text/javascript")


async def _test_push_target(request: Request) -> tuple[str, str | None, str | None]:
    """(app, pin, token) of a test push's JSON body: an app and either a pin or a device token. Only as JSON, which
    another site's page cannot post without the browser asking the console first (CORS), and it never agrees."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise Refused(400, 'the body must be JSON (Content-Type: application/json): {"app": ..., "pin": ...} or {"app": ..., "token": ...}')
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise Refused(400, f"the body is {len(body)} bytes, at most {MAX_BODY_BYTES}")
    try:
        asked = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Refused(400, 'the body must be JSON: {"app": ..., "pin": ...} or {"app": ..., "token": ...}') from None
    if not isinstance(asked, dict) or not all(isinstance(asked.get(k, ""), str) for k in ("app", "pin", "token")):
        raise Refused(400, 'the body must be a JSON object of strings: {"app": ..., "pin": ...} or {"app": ..., "token": ...}')
    app, pin, token = _app(asked.get("app", "")), asked.get("pin") or None, asked.get("token") or None
    if (pin is None) == (token is None):
        raise Refused(400, "a test push goes to a pin or to one device token: give one of them")
    if pin is not None:
        keys.check_pin(pin)
    if token is not None:
        keys.check_token(token)
    return app, pin, token


def page(name: str) -> Handler:
    async def show(request: Request) -> Response:
        return FileResponse(STATIC / name, media_type="text/html", headers={"Content-Security-Policy": PAGE_POLICY})
    return show


async def health(request: Request) -> Response:
    return JSON({"ok": True})


async def _http_error(request: Request, failed: Exception) -> Response:
    """Starlette's own refusals (no such route or file, a wrong method) as JSON, not its plain-text pages."""
    if isinstance(failed, HTTPException):
        words = {404: "there is nothing at this address", 405: f"{request.method} is not allowed here"}
        return error(failed.status_code, words.get(failed.status_code, str(failed.detail)))
    return error(500, "the console failed")


def create_app(settings: Settings, sources: Sources) -> Starlette:
    console = Console(settings, sources)
    routes: list[Any] = [
        Route("/", page("index.html")), Route("/diagnose", page("diagnose.html")), Route("/health", health),
        Route("/api/overview", answered(console.overview)),
        Route("/api/health", answered(console.health)),
        Route("/api/pins/{app}/{pin:path}", answered(console.pin_story)),
        Route("/api/messages/{app}/{msg:path}", answered(console.message_story)),
        Route("/api/test-push", answered(console.test_push), methods=["POST"]),
        Route("/api/test-push/{app}/{msg:path}", answered(console.test_push_progress)),
        Route("/report/week.png", answered(console.week_report)),
        Route("/static/chart.umd.js", console.chart_js),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
