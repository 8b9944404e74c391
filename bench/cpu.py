"""CPU seconds each component of the running stack spends: what a benchmark's work costs, and where.

    with CpuMeter(settings) as cpu:
        ...  # the work
    print(cpu.table(per=1_000_000, unit="tokens"))
"""
from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from pushpipe.config import Settings
from pushpipe.infra import process, stack

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process and its reaped children; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / TICKS


def component_seconds(settings: Settings) -> dict[str, float]:
    """Component name -> CPU seconds of its process tree so far."""
    totals = {}
    for service in stack.components(settings):
        several = getattr(service, "process_names", None)  # a service of more than one process (Kafka's nodes)
        names = several(settings) if several else [getattr(service, "process_name", service.name)]
        pids = [pid for pid in (process.read_pid(settings, name) for name in names) if pid is not None]
        if pids:
            totals[service.name] = sum(cpu_seconds(p) for pid in pids for p in [pid, *process.descendants(pid)])
    return totals


class CpuMeter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __enter__(self) -> CpuMeter:
        self.before = component_seconds(self.settings)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        after = component_seconds(self.settings)
        self.spent = {name: after[name] - self.before.get(name, 0.0) for name in after}

    def table(self, per: int, unit: str) -> str:
        """CPU seconds per component, and microseconds of CPU per unit of work (e.g. per token)."""
        rows = [(name, f"{seconds:.1f} s", f"{seconds / per * 1e6:,.0f} µs")
                for name, seconds in sorted(self.spent.items(), key=lambda kv: -kv[1])]
        total = sum(self.spent.values())
        rows.append(("all components", f"{total:.1f} s", f"{total / per * 1e6:,.0f} µs"))
        return stack.format_table(("component", "CPU", f"CPU per {unit}"), rows)
