"""A built package works: the wheel, installed into a fresh venv, imports every job and runs `pushpipe --help`,
and puts nothing into site-packages but `pushpipe` (no generic top-level names such as `jobs`)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULES = ("pushpipe.jobs.fanout", "pushpipe.jobs.dispatch", "pushpipe.jobs.analytics", "pushpipe.jobs.policy.policyfile",
           "pushpipe.sinks.chstore", "pushpipe.simulators.server", "pushpipe.infra.stack", "pushpipe.connectors.apns",
           "pushpipe.console.app", "pushpipe.schemas.registry", "pushpipe.ingress.api")


def run(*argv: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_wheel_installs_into_a_fresh_venv_and_every_job_imports(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building writes build/ and egg-info into the tree
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__"))
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", source, cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("pushpipe-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip())
    # the dependencies from this venv, without its .pth files (the editable install's finder)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel, cwd=tmp_path)
    installed = {p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth")) and p.name != "__pycache__"}
    assert installed == {"pushpipe"}
    check = "; ".join([f"import {m}" for m in MODULES] + [
        "import pushpipe, pushpipe.schemas.codec as codec",
        f"assert pushpipe.__file__.startswith({str(site)!r}), pushpipe.__file__",
        "assert list(codec.HISTORY_DIR.glob('*.avsc')), 'schema history'",
        "import pushpipe.infra.flink as flink; assert list(flink.JAVA_SOURCES.rglob('*.java')), 'java sources'",
        "import pushpipe.console.app as console; assert {'index.html', 'diagnose.html', 'overview.js', 'console.css'}"
        " <= {p.name for p in console.STATIC.iterdir()}, 'the console pages'",
    ])
    run(python, "-c", check, cwd=tmp_path)
    assert "Usage: pushpipe" in run(venv / "bin" / "pushpipe", "--help", cwd=tmp_path)
