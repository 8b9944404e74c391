"""Vendor simulators in one process: the vendor APIs over HTTP/2 + TLS, and a plain HTTP admin API.

    python -m pushpipe.simulators.server --state-dir DIR [--host 127.0.0.1 --port 18443 --admin-port 18444]

Each vendor simulator is an ASGI app that claims URL path prefixes on the API port (APNs:
`/3/device/`) and keeps its own `SimState` (fault config + record of what it received). Adding a
vendor = one module with a class satisfying `VendorSim` (simulators.common) and a `create(state_dir)`,
plus a line in `SIMULATORS`.

Admin API (JSON, HTTP/1.1; "vendor" in the query or body narrows any call to one simulator):
  GET  /health                       {"ok", "pid", "state_dir", "vendors"}
  GET  /accepted?prefix=&payloads=1  {"count", "first_at", "last_at", "unique", "tokens"[, "records"]}
                                     accepted requests; tokens=0 leaves out "unique" and "tokens"
  GET  /stats?prefix=                {"received", "by_status"} every request, by HTTP status
  GET  /config, POST /config         SimConfig fields (+ "outage_s": N for a timed outage)
  POST /reset                        defaults and empty record ({"records": false} keeps it); without
                                     "vendor", empties the device registry too ({"devices": false} keeps it)
  POST /devices                      {"devices": {"<token>": {"app_id", "brand"}, ...}[, "clear": true]}
                                     -> {"devices": N registered}: simulated devices (simulators/devices.py)
  GET  /devices?token=               {"devices": N[, "device": {"app_id", "brand"} or null]}
  POST /keys                         {"team_id", "key_id", "public_key"} (APNs signing key); with
                                     "vendor": fcm {"service_account"}, hms/honor {"app_id",
                                     "client_secret"[, "client_id"]}; xiaomi, oppo, vivo, meizu,
                                     umeng: the fields of their credentials.json
The device registry is one per process, shared by every simulator (a token names its device whatever
the vendor; "vendor" does not narrow it), at most devices.MAX_DEVICES tokens.
Batch vendors (Xiaomi `/v3/`, OPPO `/server/v1/`, vivo `/message/`, Meizu `/garcia/`, Umeng
`/api/send`) record each token of a request as received, and answer faults in their own dialect
(see simulators.batchsim and each module).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from pushpipe.simulators import apns, fcm, hms, honor, meizu, oppo, umeng, vivo, xiaomi
from pushpipe.simulators.common import Receive, Scope, Send, VendorSim, lifespan, read_body, respond_json
from pushpipe.simulators.devices import NOBODY, DeviceRegistry

# Every vendor simulator, as `create(state_dir)`: the simulator with its dev credentials registered.
RECEIPT_URLS_ENV = "PUSHPIPE_SIM_RECEIPT_URLS"
SDK_URL_ENV = "PUSHPIPE_SIM_SDK_URL"
SIMULATORS: tuple[Callable[[Path], VendorSim], ...] = (
    apns.create, fcm.create, hms.create, honor.create, xiaomi.create, oppo.create, vivo.create, meizu.create, umeng.create)


# ---- the two ASGI apps ---------------------------------------------------------------------------

class ApiRouter:
    """The vendor API port: dispatch by path prefix to the vendor simulator that claims it."""

    def __init__(self, vendors: Mapping[str, VendorSim]) -> None:
        self._routes = sorted(((p, v) for v in vendors.values() for p in v.prefixes),
                              key=lambda r: -len(r[0]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        for prefix, vendor in self._routes:
            if scope["path"].startswith(prefix):
                return await vendor(scope, receive, send)
        await respond_json(send, 404, {"reason": "BadPath"})


class AdminApp:
    """Plain-HTTP JSON control plane for tests and demos."""

    def __init__(self, vendors: Mapping[str, VendorSim], state_dir: Path) -> None:
        self.vendors = vendors
        self.state_dir = state_dir

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        body = await read_body(receive)
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        handler = self._routes().get((scope["method"], scope["path"]))
        if handler is None:
            return await respond_json(send, 404, {"error": f"no route {scope['method']} {scope['path']}"})
        try:
            args = json.loads(body) if body else {}
            if not isinstance(args, dict):
                raise ValueError("body must be a JSON object")
            result = handler({**query, **args})
        except (ValueError, KeyError, TypeError) as exc:
            return await respond_json(send, 400, {"error": str(exc)})
        await respond_json(send, 200, result)

    def _routes(self) -> dict[tuple[str, str], Callable[[dict[str, Any]], Any]]:
        return {
            ("GET", "/health"): self.health,
            ("GET", "/accepted"): self.accepted,
            ("GET", "/stats"): self.stats,
            ("GET", "/config"): self.config,
            ("POST", "/config"): self.configure,
            ("POST", "/reset"): self.reset,
            ("POST", "/keys"): self.keys,
            ("GET", "/devices"): self.devices,
            ("POST", "/devices"): self.register_devices,
        }

    def _select(self, args: dict[str, Any]) -> list[VendorSim]:
        name = args.pop("vendor", None)
        if name is None:
            return list(self.vendors.values())
        if name not in self.vendors:
            raise ValueError(f"unknown vendor {name!r}; have {sorted(self.vendors)}")
        return [self.vendors[name]]

    def health(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "pid": os.getpid(), "state_dir": str(self.state_dir),
                "vendors": sorted(self.vendors)}

    def accepted(self, args: dict[str, Any]) -> dict[str, Any]:
        prefix, payloads = args.pop("prefix", ""), _flag(args.pop("payloads", False))
        with_tokens = _flag(args.pop("tokens", True))
        parts = [v.state.recorder.summary(prefix, payloads, with_tokens) for v in self._select(args)]
        times = [p for p in parts if p["count"]]
        merged: dict[str, Any] = {"count": sum(p["count"] for p in parts),
                                  "first_at": min((p["first_at"] for p in times), default=None),
                                  "last_at": max((p["last_at"] for p in times), default=None)}
        if with_tokens:  # a counts-only poll skips building (and deduplicating) millions of tokens
            merged["tokens"] = [t for p in parts for t in p["tokens"]]
            merged["unique"] = len(set(merged["tokens"]))
        if payloads:
            merged["records"] = [r for p in parts for r in p["records"]]
        return merged

    def stats(self, args: dict[str, Any]) -> dict[str, Any]:
        prefix = args.pop("prefix", "")
        total: Counter[str] = Counter()
        for v in self._select(args):
            total.update(v.state.recorder.stats(prefix)["by_status"])
        return {"received": sum(total.values()), "by_status": dict(total)}

    def config(self, args: dict[str, Any]) -> dict[str, Any]:
        return {v.name: v.state.config.to_json() for v in self._select(args)}

    def configure(self, args: dict[str, Any]) -> dict[str, Any]:
        targets = self._select(args)
        for v in targets:
            v.state.configure(args, time.time())
        return {v.name: v.state.config.to_json() for v in targets}

    def reset(self, args: dict[str, Any]) -> dict[str, Any]:
        """Back to defaults; {"records": false} keeps the record, {"config": false} the faults; without a vendor
        (all of them), the device registry is emptied too unless {"devices": false}."""
        config, records = _flag(args.pop("config", True)), _flag(args.pop("records", True))
        devices = _flag(args.pop("devices", config and "vendor" not in args))
        for v in self._select(args):
            v.state.reset(config=config, records=records)
        if devices:
            for registry in self._registries():
                registry.clear()
        return {"ok": True}

    def devices(self, args: dict[str, Any]) -> dict[str, Any]:
        registry = self._registry()
        out: dict[str, Any] = {"devices": len(registry)}
        if "token" in args:
            found = registry.get(str(args["token"]))
            out["device"] = found._asdict() if found != NOBODY else None
        return out

    def register_devices(self, args: dict[str, Any]) -> dict[str, Any]:
        """{"devices": {token: {"app_id", "brand"}}}: add or replace them (all or none); with {"clear": true}, in place
        of every device registered before."""
        return {"devices": self._registry().register(args.get("devices", {}), clear=_flag(args.get("clear", False)))}

    def _registries(self) -> list[DeviceRegistry]:
        """The simulators' device registries: one, shared, in a server (build_vendors)."""
        return list({id(v.state.devices): v.state.devices for v in self.vendors.values()}.values())

    def _registry(self) -> DeviceRegistry:
        registries = self._registries()
        if len(registries) != 1:
            raise ValueError(f"the simulators do not share one device registry ({len(registries)})")
        return registries[0]

    def keys(self, args: dict[str, Any]) -> dict[str, Any]:
        args.setdefault("vendor", "apns")
        for v in self._select(args):
            v.register_key(args)
        return {"ok": True}


def _flag(value: Any) -> bool:
    """A boolean from JSON (true/false) or a query string ("1", "true", "0", "false")."""
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


# ---- process entry point -------------------------------------------------------------------------

def _settings_ports() -> tuple[str, int, int]:
    from pushpipe.config import Settings

    s = Settings()
    api, admin = urlsplit(s.simulator_url), urlsplit(s.simulator_admin_url)
    return api.hostname or "127.0.0.1", api.port or 18443, admin.port or 18444


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    host, port, admin_port = _settings_ports()
    p = argparse.ArgumentParser(prog="python -m pushpipe.simulators.server", description=__doc__.split("\n")[0])
    p.add_argument("--state-dir", type=Path, required=True, help="TLS files and dev credentials go here")
    p.add_argument("--host", default=host)
    p.add_argument("--port", type=int, default=port, help="vendor APIs, HTTP/2 over TLS")
    p.add_argument("--admin-port", type=int, default=admin_port, help="admin API, plain HTTP/1.1")
    return p.parse_args(argv)


def build_vendors(state_dir: Path) -> dict[str, VendorSim]:
    """Create every vendor simulator with its dev credentials registered, sharing one device registry."""
    sims = [create(state_dir) for create in SIMULATORS]
    registry = DeviceRegistry()
    for sim in sims:
        sim.state.devices = registry
    return {sim.name: sim for sim in sims}


def _hypercorn_config(bind: str, tls: Any | None) -> Any:
    from hypercorn.config import Config

    cfg = Config()
    cfg.bind = [bind]
    cfg.keep_alive_timeout = 3600  # vendors keep connections long-lived
    cfg.keep_alive_max_requests = 2**31  # never GOAWAY after N requests
    cfg.graceful_timeout = 2
    if tls is not None:
        cfg.certfile, cfg.keyfile = str(tls.cert), str(tls.key)
    return cfg


async def serve(args: argparse.Namespace) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.typing import ASGIFramework

    from pushpipe.simulators.tls import ensure_tls

    tls = ensure_tls(args.state_dir / "tls", hosts=(args.host, "localhost"))
    vendors = build_vendors(args.state_dir)
    # where a vendor posts receipts without a callback URL in the send (its console setting): JSON
    # {vendor: url} in the environment, not the command line, since each URL holds a signature
    for name, url in json.loads(os.environ.get(RECEIPT_URLS_ENV) or "{}").items():
        vendors[name].state.home["receipt_url"] = url
    if sdk_url := os.environ.get(SDK_URL_ENV):  # the simulated apps post their opens and clicks here
        for vendor in vendors.values():
            vendor.state.home["sdk_url"] = sdk_url
    for vendor in vendors.values():
        vendor.state.reset(records=False)
    _write_discovery(args, tls.ca_cert, vendors)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"simulators: api https://{args.host}:{args.port} admin http://{args.host}:{args.admin_port} "
          f"state {args.state_dir} vendors {sorted(vendors)}", flush=True)
    await asyncio.gather(
        hypercorn_serve(cast(ASGIFramework, ApiRouter(vendors)), _hypercorn_config(f"{args.host}:{args.port}", tls),
                        shutdown_trigger=stop.wait, mode="asgi"),
        hypercorn_serve(cast(ASGIFramework, AdminApp(vendors, args.state_dir)),
                        _hypercorn_config(f"{args.host}:{args.admin_port}", None),
                        shutdown_trigger=stop.wait, mode="asgi"),
    )


def _write_discovery(args: argparse.Namespace, ca_cert: Path, vendors: Mapping[str, VendorSim]) -> None:
    """state-dir/simulators.json: where clients find the URLs, the CA and each vendor's credentials."""
    doc = {"api_url": f"https://{args.host}:{args.port}", "admin_url": f"http://{args.host}:{args.admin_port}",
           "ca_cert": str(ca_cert),
           "credentials": {name: str(args.state_dir / name / "credentials.json") for name in vendors}}
    (args.state_dir / "simulators.json").write_text(json.dumps(doc, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.state_dir = args.state_dir.resolve()
    args.state_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    from pushpipe.simulators import server as _canonical  # run the importable module, not a __main__ copy

    raise SystemExit(_canonical.main())
