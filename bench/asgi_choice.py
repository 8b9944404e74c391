"""Which ASGI framework and server the send API (ingress/api.py) runs on, chosen by measurement.

    /tmp/venv/bin/python -m bench.asgi_choice [--seconds 10] [--concurrency 64] [--rate 3000]

Each candidate serves the same representative send endpoint, written as one would in that framework: POST
/v1/apps/{app}/push with the app's id and secret in headers, a JSON PushRequest parsed and validated (shape,
types, enums, sizes), a no-op "produce" that settles on the event loop's next turn (as a Kafka ack does via
call_soon_threadsafe), and a 202 with the msg id. Starlette with a hand-written validator (orjson), FastAPI
with a pydantic model, Litestar with a msgspec Struct (each framework's own way of validating), and the same
Starlette app on granian. The server runs in a process of its own; the load comes from another one
(bench/httpload.py: keep-alive connections, one request in flight each), first in a closed loop (the most
each stack takes), then paced at --rate (latency at a load all of them take). CPU per request is the server
process tree's user + system CPU over the measured seconds, divided by the requests answered.

The candidates other than Starlette and uvicorn come with `pip install -c constraints.txt -e '.[dev,asgi-bench]'`.

Measured on this project's 2-core machine (Python 3.11; 64 connections; the server, the load and a CI run of
the whole stack sharing the 2 cores, so figures swing by 2x between rounds: compare within a round). The round
with the least neighbour load (8 s per phase, paced at 3,000/s):

    stack              max req/s   CPU µs/req   paced 3,000/s: p50 ms  p99 ms   CPU µs/req
    starlette-uvicorn      8,994          76                   0.76    6.46          109
    litestar-uvicorn       6,337         122                   1.69   37.03          174
    starlette-granian      6,226         132                   1.86   85.14          197
    fastapi-uvicorn        3,282         270                  45.71  128.17          280

Over 11 rounds in three runs (busier ones too), Starlette on uvicorn spent the least CPU per request in every
round (76-121 µs at the most it takes; granian 119-184, Litestar 122-204, FastAPI 270-503) and took the most
requests/s in 8 of 11 (granian in the other 3).

On 2026-12-01 two more candidates without a framework, in three rounds with Starlette (6 s per phase, paced at
5,000/s): a plain ASGI app on uvicorn (asgi-uvicorn) spent 67-69 µs per request at the most it takes (12,300-12,950
requests/s), granian's own interface RSGI (rsgi-granian) 78-79 µs (10,700-11,450/s), Starlette on uvicorn 129-132 µs
(6,550-6,870/s). Hence ingress/api.py: plain ASGI on uvicorn (ingress/asgi.py).
"""
# no `from __future__ import annotations`: FastAPI and Litestar read the handlers' annotations, which name local classes
import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any, Literal

from bench.cpu import cpu_seconds
from bench.httpload import drive, json_request
from pushpipe.infra.process import descendants

STACKS = ("starlette-uvicorn", "fastapi-uvicorn", "litestar-uvicorn", "starlette-granian", "rsgi-granian", "asgi-uvicorn")
APP, SECRET = "bench-app", "s3cret-" + "x" * 36
BODY = {"target": "pin", "pins": ["user-1"], "notification": {"title": "Your order shipped", "body": "Arriving Tuesday",
                                                                "data": {"order": "A-1"}},
        "priority": "normal", "category": "transactional", "ttl_s": 3600}
TARGETS, PRIORITIES = ("pin", "pins", "tokens", "broadcast", "segment"), ("high", "normal", "low")
MAX_PINS = 1000


async def acked() -> None:
    """The no-op produce: settles on the loop's next turn, as a delivery callback does."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    loop.call_soon(done.set_result, None)
    await done


def authorized(app: str, given_app: str | None, authorization: str | None) -> bool:
    import hmac
    return given_app == app == APP and hmac.compare_digest((authorization or "").encode(), f"Bearer {SECRET}".encode())


def problems(doc: Any) -> dict[str, str]:
    """What is wrong with a push body, by field: the validation every candidate does in its own way."""
    if not isinstance(doc, dict):
        return {"": "expected a JSON object"}
    bad = {}
    if doc.get("target") not in TARGETS:
        bad["target"] = f"one of {TARGETS}"
    pins = doc.get("pins", [])
    if not isinstance(pins, list) or len(pins) > MAX_PINS or not all(isinstance(p, str) and p for p in pins):
        bad["pins"] = f"a list of at most {MAX_PINS} non-empty strings"
    note = doc.get("notification")
    if not isinstance(note, dict) or not all(isinstance(note.get(k, ""), str) for k in ("title", "body")):
        bad["notification"] = "an object with string title and body"
    elif not isinstance(note.get("data", {}), dict):
        bad["notification.data"] = "an object of strings"
    if doc.get("priority", "normal") not in PRIORITIES:
        bad["priority"] = f"one of {PRIORITIES}"
    if not isinstance(doc.get("category", ""), str):
        bad["category"] = "a string"
    ttl = doc.get("ttl_s", 86400)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 < ttl <= 28 * 86400:
        bad["ttl_s"] = "an integer of seconds, 1 to 28 days"
    return bad


# --- Starlette: orjson + a hand-written validator --------------------------------------------------------------

def starlette_app() -> Any:
    import orjson
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def push(request: Request) -> Response:
        app = request.path_params["app"]
        if not authorized(app, request.headers.get("x-pushpipe-app"), request.headers.get("authorization")):
            return JSONResponse({"error": "unauthorized"}, 401)
        try:
            doc = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return JSONResponse({"error": "invalid", "fields": {"": "not JSON"}}, 400)
        bad = problems(doc)
        if bad:
            return JSONResponse({"error": "invalid", "fields": bad}, 400)
        msg_id = request.headers.get("idempotency-key") or uuid.uuid4().hex
        await acked()
        return Response(orjson.dumps({"msg_ids": [msg_id]}), 202, media_type="application/json")

    return Starlette(routes=[Route("/v1/apps/{app}/push", push, methods=["POST"])])


# --- FastAPI: a pydantic model ---------------------------------------------------------------------------------

def fastapi_app() -> Any:
    from typing import Annotated

    from fastapi import FastAPI, Header, Response
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, Field

    class Notification(BaseModel):
        title: str = ""
        body: str = ""
        data: dict[str, str] = {}

    class Push(BaseModel):
        target: Literal["pin", "pins", "tokens", "broadcast", "segment"]
        pins: Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=MAX_PINS)] = []
        notification: Notification
        priority: Literal["high", "normal", "low"] = "normal"
        category: str = "transactional"
        ttl_s: Annotated[int, Field(gt=0, le=28 * 86400)] = 86400

    api = FastAPI()

    @api.post("/v1/apps/{app}/push", status_code=202)
    async def push(app: str, push: Push, response: Response, x_pushpipe_app: Annotated[str | None, Header()] = None,
                   authorization: Annotated[str | None, Header()] = None,
                   idempotency_key: Annotated[str | None, Header()] = None) -> Any:
        if not authorized(app, x_pushpipe_app, authorization):
            return JSONResponse({"error": "unauthorized"}, 401)
        await acked()
        return {"msg_ids": [idempotency_key or uuid.uuid4().hex]}

    return api


# --- Litestar: a msgspec Struct --------------------------------------------------------------------------------

def litestar_app() -> Any:
    from typing import Annotated

    import msgspec
    from litestar import Litestar, Response, post
    from litestar.params import Parameter

    class Notification(msgspec.Struct):
        title: str = ""
        body: str = ""
        data: dict[str, str] = {}

    class Push(msgspec.Struct):
        target: Literal["pin", "pins", "tokens", "broadcast", "segment"]
        notification: Notification
        pins: Annotated[list[Annotated[str, msgspec.Meta(min_length=1)]], msgspec.Meta(max_length=MAX_PINS)] = []
        priority: Literal["high", "normal", "low"] = "normal"
        category: str = "transactional"
        ttl_s: Annotated[int, msgspec.Meta(gt=0, le=28 * 86400)] = 86400

    @post("/v1/apps/{app:str}/push", status_code=202)
    async def push(app: str, data: Push, x_pushpipe_app: Annotated[str | None, Parameter(header="x-pushpipe-app")] = None,
                   authorization: Annotated[str | None, Parameter(header="authorization")] = None,
                   idempotency_key: Annotated[str | None, Parameter(header="idempotency-key")] = None) -> Response[dict[str, Any]]:
        if not authorized(app, x_pushpipe_app, authorization):
            return Response({"error": "unauthorized"}, status_code=401)
        await acked()
        return Response({"msg_ids": [idempotency_key or uuid.uuid4().hex]}, status_code=202)

    return Litestar(route_handlers=[push], openapi_config=None)


# --- RSGI on granian: no framework, the route matched by hand -------------------------------------------------

class RsgiApp:
    """Granian's own interface (RSGI): the request's scope and a protocol object that reads the body and answers."""

    async def __call__(self, scope: Any, protocol: Any) -> None:
        import orjson

        parts = scope.path.split("/")
        if scope.method != "POST" or len(parts) != 5 or parts[:3] != ["", "v1", "apps"] or parts[4] != "push":
            protocol.response_bytes(404, [("content-type", "application/json")], b'{"error":"not_found"}')
            return
        headers = scope.headers
        if not authorized(parts[3], headers.get("x-pushpipe-app"), headers.get("authorization")):
            protocol.response_bytes(401, [("content-type", "application/json")], b'{"error":"unauthorized"}')
            return
        try:
            doc = orjson.loads(await protocol())
        except orjson.JSONDecodeError:
            protocol.response_bytes(400, [("content-type", "application/json")], b'{"error":"invalid"}')
            return
        bad = problems(doc)
        if bad:
            protocol.response_bytes(400, [("content-type", "application/json")], orjson.dumps({"error": "invalid", "fields": bad}))
            return
        msg_id = headers.get("idempotency-key") or uuid.uuid4().hex
        await acked()
        protocol.response_bytes(202, [("content-type", "application/json")], orjson.dumps({"msg_ids": [msg_id]}))


rsgi_app = RsgiApp()


# --- plain ASGI on uvicorn: no framework --------------------------------------------------------------------------

async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    import orjson

    async def answer(status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"),
                                                                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    if scope["type"] != "http":
        return
    parts = scope["path"].split("/")
    if scope["method"] != "POST" or len(parts) != 5 or parts[:3] != ["", "v1", "apps"] or parts[4] != "push":
        return await answer(404, b'{"error":"not_found"}')
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    if not authorized(parts[3], headers.get("x-pushpipe-app"), headers.get("authorization")):
        return await answer(401, b'{"error":"unauthorized"}')
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return await answer(400, b'{"error":"invalid"}')
    bad = problems(doc)
    if bad:
        return await answer(400, orjson.dumps({"error": "invalid", "fields": bad}))
    msg_id = headers.get("idempotency-key") or uuid.uuid4().hex
    await acked()
    await answer(202, orjson.dumps({"msg_ids": [msg_id]}))


# --- serving and driving ---------------------------------------------------------------------------------------

def serve(stack: str, port: int) -> None:
    if stack == "rsgi-granian":
        os.execvp(sys.executable, [sys.executable, "-m", "granian", "--interface", "rsgi", "--host", "127.0.0.1", "--port", str(port),
                                   "--workers", "1", "--loop", "uvloop", "--no-ws", "--log-level", "warning", "bench.asgi_choice:rsgi_app"])
    if stack == "starlette-granian":
        os.execvp(sys.executable, [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                                   "--workers", "1", "--loop", "uvloop", "--no-ws", "--log-level", "warning", "--factory",
                                   "bench.asgi_choice:starlette_app"])
    import uvicorn

    makers: dict[str, Any] = {"asgi-uvicorn": lambda: asgi_app, "starlette-uvicorn": starlette_app, "fastapi-uvicorn": fastapi_app,
                              "litestar-uvicorn": litestar_app}
    app = makers[stack]()
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", access_log=False, log_level="warning")


def push_request(number: int) -> tuple[str, dict[str, str], bytes]:
    return json_request(f"/v1/apps/{APP}/push", {"X-Pushpipe-App": APP, "Authorization": f"Bearer {SECRET}",
                                                 "Idempotency-Key": f"m-{number}"}, BODY)


def drive_once(url: str, seconds: float, concurrency: int, rate: float) -> None:
    print(json.dumps(drive(url, push_request, concurrency, seconds, rate).summary()))


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in [pid, *descendants(pid)])


def wait_answering(url: str, server: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            httpx.post(f"{url}/v1/apps/{APP}/push", json=BODY, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answers on {url}")


def phase(url: str, server_pid: int, seconds: float, concurrency: int, rate: float) -> dict[str, Any]:
    before = tree_cpu(server_pid)
    out = subprocess.run([sys.executable, "-m", "bench.asgi_choice", "drive", url, str(seconds), str(concurrency), str(rate)],
                         check=True, capture_output=True, text=True).stdout
    spent = tree_cpu(server_pid) - before
    figures: dict[str, Any] = json.loads(out)
    figures["cpu_us_per_request"] = round(spent / max(1, figures["requests"]) * 1e6, 1)
    figures["server_cpu_s"] = round(spent, 2)
    return figures


def measure(stack: str, port: int, seconds: float, concurrency: int, rate: float) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "bench.asgi_choice", "serve", stack, str(port)], start_new_session=True)
    try:
        wait_answering(url, server)
        phase(url, server.pid, 2, concurrency, 0)  # warm up
        return {"max": phase(url, server.pid, seconds, concurrency, 0), "paced": phase(url, server.pid, seconds, concurrency, rate)}
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(15)


def row(stack: str, name: str, f: dict[str, Any]) -> str:
    ok = f["statuses"].get("202", 0)
    return (f"{stack:<18} {name:<6} {f['per_s']:>9,.0f} {f['p50_ms']:>8.2f} {f['p99_ms']:>8.2f} {f['cpu_us_per_request']:>9.0f}"
            f" {ok:>8} {sum(f['errors'].values()) + f['requests'] - ok:>6}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "drive":
        drive_once(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=3000, help="requests/s of the paced phase")
    parser.add_argument("--port", type=int, default=18971, help="the candidates' port (loopback)")
    parser.add_argument("--stacks", default=",".join(STACKS))
    parser.add_argument("--rounds", type=int, default=3, help="each stack this many times, in turns; the median round is shown")
    args = parser.parse_args()
    header = f"{'stack':<18} {'phase':<6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>9} {'202':>8} {'other':>6}"
    print(header, flush=True)
    stacks = args.stacks.split(",")
    rounds: dict[str, list[dict[str, Any]]] = {stack: [] for stack in stacks}
    for _ in range(args.rounds):  # in turns, so that a neighbour's load falls on every stack alike
        for stack in stacks:
            rounds[stack].append(measure(stack, args.port, args.seconds, args.concurrency, args.rate))
            for name in ("max", "paced"):
                print(row(stack, name, rounds[stack][-1][name]), flush=True)
    print(f"\nmedian of {args.rounds} round(s) (by the phase's req/s for max, by p99 for paced)\n{header}")
    for stack in stacks:
        print(row(stack, "max", sorted((r["max"] for r in rounds[stack]), key=lambda f: f["per_s"])[args.rounds // 2]))
        print(row(stack, "paced", sorted((r["paced"] for r in rounds[stack]), key=lambda f: f["p99_ms"])[args.rounds // 2]))


if __name__ == "__main__":
    main()
