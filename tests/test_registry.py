"""The vendor registry: one spec per vendor, consistent with its classes; no import circles in connectors/ and simulators/."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from pushpipe.connectors.base import Vendor
from pushpipe.connectors.registry import SPECS, create_adapter, spec
from pushpipe.jobs.policy.classify import QUOTA_VENDORS, UNCLASSIFIED_PER_DAY
from pushpipe.jobs.policy.limits import PAYLOAD_LIMITS

ROOT = Path(__file__).resolve().parent.parent


def test_every_vendor_has_one_consistent_spec() -> None:
    assert set(SPECS) == set(Vendor)
    for vendor, s in SPECS.items():
        assert s.vendor is vendor and s.config.vendor is vendor
        assert getattr(s.adapter, "vendor", None) is vendor, s.adapter
        assert s.config.__module__ == s.adapter.__module__ == f"pushpipe.connectors.{vendor.value}"


def test_tables_read_from_the_registry() -> None:
    assert set(PAYLOAD_LIMITS) == {v.value for v in Vendor}
    assert set(QUOTA_VENDORS) == {"hms", "honor", "oppo", "vivo", "xiaomi"}
    assert dict(UNCLASSIFIED_PER_DAY) == {"xiaomi": 1}


def test_unknown_vendors_are_refused() -> None:
    with pytest.raises(ValueError):
        spec("carrier-pigeon")
    with pytest.raises(ValueError):
        create_adapter("carrier-pigeon", object())  # type: ignore[arg-type]


def test_base_imports_no_adapter() -> None:
    code = ("import sys, pushpipe.connectors.base, pushpipe.connectors.spec; "
            "loaded = [v.value for v in pushpipe.connectors.base.Vendor if f'pushpipe.connectors.{v.value}' in sys.modules]; "
            "assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_vendor_has_a_simulator(tmp_path: Path) -> None:
    from pushpipe.simulators.server import build_vendors

    assert set(build_vendors(tmp_path)) == {v.value for v in Vendor}


def imports(package: str) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports (at module level or inside functions)."""
    graph = {}
    for path in (ROOT / package).glob("*.py"):
        name = f"pushpipe.{package}.{path.stem}"
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m.startswith(f"pushpipe.{package}.") and m != name}
    return {m: {d for d in deps if d in graph} for m, deps in graph.items()}


@pytest.mark.parametrize("package", ["connectors", "simulators"])
def test_no_import_circles(package: str) -> None:
    graph = imports(package)

    def reaches(start: str, target: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for dep in graph[todo.pop()] - seen:
                if dep == target:
                    return True
                seen.add(dep)
                todo.append(dep)
        return False

    circles = sorted(m for m in graph if reaches(m, m))
    assert circles == [], circles
