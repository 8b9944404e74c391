"""Chart.js for the web console's charts: the npm registry's tarball, integrity-checked, into the download cache.

The console serves the one file it needs from there (never a CDN: the console works offline), so nothing of
Chart.js is in the repository. `pushpipe up` installs it (infra/console.py).
"""
from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

from pushpipe.config import Settings
from pushpipe.infra.download import fetch

VERSION = "4.5.1"
URL = f"https://registry.npmjs.org/chart.js/-/chart.js-{VERSION}.tgz"
INTEGRITY = "sha512-GIjfiT9dbmHRiYi6Nl2yFCq7kkwdkp1W/lp2J99rX0yo9tgJGn3lKQATztIjb5tVtevcBtIdICNWqlq5+E8/Pw=="  # the registry's dist.integrity
MEMBER = "package/dist/chart.umd.js"  # the UMD build (minified): one <script>, window.Chart


def script(settings: Settings) -> Path:
    """Where the console finds chart.umd.js once installed."""
    return settings.cache_dir / f"chartjs-{VERSION}" / "chart.umd.js"


def install(settings: Settings) -> Path:
    """Download the tarball (kept in cache_dir/npm) and take chart.umd.js out of it; nothing to do once done."""
    target = script(settings)
    if target.exists():
        return target
    archive = fetch(URL, settings.cache_dir / "npm" / f"chart.js-{VERSION}.tgz", integrity=INTEGRITY)
    with tarfile.open(archive, "r:gz") as tar:
        try:
            member = tar.extractfile(MEMBER)
        except KeyError:
            member = None
        if member is None:
            raise RuntimeError(f"{archive} holds no file {MEMBER}")
        data = member.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        tmp.chmod(0o644)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
