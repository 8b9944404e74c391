"""The vendor simulators (`python -m simulators.server`) as a managed background service.

run_dir/simulators/ holds simulators.pid, simulators.log and the simulator state: tls/ca.pem,
apns/AuthKey_<kid>.p8 + apns/credentials.json, and simulators.json (URLs, CA, credential paths).
Process helpers are self-contained here for now; they will be unified with infra/process.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from connectors.apns import ApnsConfig
from infra.service import Health
from pushpipe.config import Settings

NAME = "simulators"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_spawned: dict[int, subprocess.Popen[bytes]] = {}  # children of this process, reaped by stop()


@dataclass(frozen=True)
class SimPaths:
    state_dir: Path
    pid_file: Path
    log_file: Path


def sim_paths(settings: Settings) -> SimPaths:
    d = settings.run_dir / NAME
    return SimPaths(d, d / f"{NAME}.pid", d / f"{NAME}.log")


def state_dir(settings: Settings) -> Path:
    """The running simulator's state dir (it may have been started with another home)."""
    try:
        return Path(SimulatorAdmin(settings.simulator_admin_url, timeout_s=2).health()["state_dir"])
    except (httpx.HTTPError, ValueError, KeyError):
        return sim_paths(settings).state_dir


def apns_config(settings: Settings, **overrides: Any) -> ApnsConfig:
    """An ApnsConfig pointing at the running simulator, with its dev key and CA."""
    d = state_dir(settings)
    defaults = {"base_url": settings.simulator_url, "sandbox_url": settings.simulator_url,
                "verify": str(d / "tls" / "ca.pem")}
    return ApnsConfig.from_credentials(d / "apns" / "credentials.json", **{**defaults, **overrides})


class Simulators:
    """Service: the APNs (and later other vendors') simulators in one process."""

    name = "vendor-simulators"
    version = "0.1.0"

    def address(self, settings: Settings) -> str:
        return f"{settings.simulator_url} (admin {settings.simulator_admin_url})"

    def install(self, settings: Settings) -> None:
        """Nothing to download: the simulators are part of this package."""

    def start(self, settings: Settings) -> None:
        if not self.health(settings).ok:
            p = sim_paths(settings)
            pid = _live_pid(p.pid_file) or _spawn(settings, p)
            _wait_healthy(self, settings, pid, p.log_file)
        _write_vendors_file(settings)

    def stop(self, settings: Settings) -> None:
        p = sim_paths(settings)
        pid = _live_pid(p.pid_file)
        if pid is not None:
            _terminate(pid)
        p.pid_file.unlink(missing_ok=True)

    def health(self, settings: Settings) -> Health:
        try:
            doc = SimulatorAdmin(settings.simulator_admin_url).health()
        except (httpx.HTTPError, ValueError) as exc:
            return Health(False, f"admin API: {type(exc).__name__}")
        return Health(bool(doc.get("ok")), f"pid {doc.get('pid')}, vendors {','.join(doc.get('vendors', []))}")


class SimulatorAdmin:
    """Client for the simulators' admin API (tests, demos, benchmarks)."""

    def __init__(self, admin_url: str, timeout_s: float = 10.0) -> None:
        self.url, self.timeout_s = admin_url.rstrip("/"), timeout_s

    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = httpx.request(method, self.url + path, params=params, json=body, timeout=self.timeout_s)
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def accepted(self, prefix: str = "", payloads: bool = False) -> dict[str, Any]:
        return self._call("GET", "/accepted", params={"prefix": prefix, "payloads": int(payloads)})

    def stats(self, prefix: str = "") -> dict[str, Any]:
        return self._call("GET", "/stats", params={"prefix": prefix})

    def configure(self, vendor: str | None = None, **changes: Any) -> dict[str, Any]:
        return self._call("POST", "/config", body={**changes, **({"vendor": vendor} if vendor else {})})

    def reset(self, *, config: bool = True, records: bool = True) -> None:
        self._call("POST", "/reset", body={"config": config, "records": records})

    def register_apns_key(self, team_id: str, key_id: str, public_key_pem: str) -> None:
        self._call("POST", "/keys", body={"vendor": "apns", "team_id": team_id, "key_id": key_id,
                                          "public_key": public_key_pem})


# ---- process helpers ------------------------------------------------------------------------------

def _argv(settings: Settings, directory: Path) -> list[str]:
    api, admin = urlsplit(settings.simulator_url), urlsplit(settings.simulator_admin_url)
    return [sys.executable, "-m", "simulators.server", "--state-dir", str(directory),
            "--host", api.hostname or "127.0.0.1", "--port", str(api.port or 18443),
            "--admin-port", str(admin.port or 18444)]


def _spawn(settings: Settings, p: SimPaths) -> int:
    p.state_dir.mkdir(parents=True, exist_ok=True)
    argv = _argv(settings, p.state_dir)
    with p.log_file.open("ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=p.state_dir, start_new_session=True, close_fds=True)
    _spawned[proc.pid] = proc
    p.pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def _wait_healthy(service: Simulators, settings: Settings, pid: int, log_file: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not service.health(settings).ok:
        if not _alive(pid) or time.monotonic() > deadline:
            state = "exited" if not _alive(pid) else f"not healthy after {START_TIMEOUT_S:.0f}s"
            raise RuntimeError(f"vendor simulators {state}; last lines of {log_file}:\n{_tail(log_file)}")
        time.sleep(0.1)


def _live_pid(pid_file: Path) -> int | None:
    """The recorded pid if that process is alive and is a simulator server."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and _is_simulator(pid) else None


def _alive(pid: int) -> bool:
    proc = _spawned.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _is_simulator(pid: int) -> bool:
    try:
        return b"simulators.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _terminate(pid: int) -> None:
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _alive(pid):
            break
    proc = _spawned.pop(pid, None)
    if proc is not None:
        proc.wait(timeout=1)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _write_vendors_file(settings: Settings) -> None:
    """Point the pipeline at the simulators, unless the vendors file is a user's own elsewhere."""
    from connectors.config import write_simulator_vendors

    target = settings.vendors_file
    if target.exists() and not target.resolve().is_relative_to(settings.run_dir.resolve()):
        return
    write_simulator_vendors(state_dir(settings), target)
