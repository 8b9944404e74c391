"""Cached HTTPS downloads (Maven Central first of all, npm's registry) with a progress line on stderr."""
from __future__ import annotations

import base64
import hashlib
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
_CHUNK = 1 << 20
_TIMEOUT_S = 60


def maven_url(group: str, artifact: str, version: str, ext: str = "jar", classifier: str | None = None) -> str:
    """URL of one artifact on Maven Central, e.g. maven_url("org.apache.kafka", "kafka_2.13", "4.1.1")."""
    suffix = f"-{classifier}" if classifier else ""
    return f"{MAVEN_CENTRAL}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}{suffix}.{ext}"


def fetch(url: str, dest: Path, integrity: str | None = None) -> Path:
    """Download url to dest unless dest already exists; atomic (temp file + rename), sha1-checked on Maven,
    and checked against `integrity` when given (npm's "sha512-<base64>", the package's dist.integrity)."""
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    sha512 = _expected_sha512(integrity) if integrity else None
    try:
        expected = _expected_sha1(url)
    except urllib.error.URLError as err:
        raise RuntimeError(f"cannot download {url}: {err}") from err
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digests = {"sha1": hashlib.sha1(), "sha512": hashlib.sha512()}
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                _stream(url, out, dest.name, list(digests.values()))
            except urllib.error.URLError as err:
                raise RuntimeError(f"cannot download {url}: {err}") from err
        actual = digests["sha1"].hexdigest()
        if expected and actual != expected:
            raise RuntimeError(f"sha1 mismatch for {url}: expected {expected}, got {actual}")
        if sha512 and digests["sha512"].digest() != sha512:
            got = base64.b64encode(digests["sha512"].digest()).decode()
            raise RuntimeError(f"integrity mismatch for {url}: expected {integrity}, got sha512-{got}")
        tmp.chmod(0o644)  # mkstemp creates 0600
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _expected_sha1(url: str) -> str | None:
    """The published .sha1 next to a Maven artifact, or None when there is none."""
    if not url.startswith(MAVEN_CENTRAL):
        return None
    try:
        with urllib.request.urlopen(url + ".sha1", timeout=_TIMEOUT_S) as resp:
            text = resp.read().decode("ascii", "replace").strip()
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise
    # Some .sha1 files hold "<hash>  <filename>"; only the hash matters.
    return text.split()[0].lower() if text else None


def _expected_sha512(integrity: str) -> bytes:
    """The digest of a Subresource Integrity value such as npm's "sha512-<base64>"."""
    algorithm, _, encoded = integrity.partition("-")
    if algorithm != "sha512" or not encoded:
        raise ValueError(f"expected an integrity value sha512-<base64>, got {integrity[:20]!r}")
    return base64.b64decode(encoded, validate=True)


def _stream(url: str, out: BinaryIO, label: str, digests: list[hashlib._Hash]) -> None:
    """Copy the response body into out, feeding each digest, drawing progress on stderr."""
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:
        total = int(resp.headers.get("Content-Length") or 0)
        done, last_draw = 0, time.monotonic()
        while chunk := resp.read(_CHUNK):
            out.write(chunk)
            for digest in digests:
                digest.update(chunk)
            done += len(chunk)
            now = time.monotonic()
            if now - last_draw > 0.5:
                _progress(label, done, total)
                last_draw = now
        _progress(label, done, total)
        sys.stderr.write("\n")


def _progress(label: str, done: int, total: int) -> None:
    mb = done / 1e6
    if total:
        line = f"  {label}: {100 * done / total:5.1f}%  {mb:7.1f} / {total / 1e6:.1f} MB"
    else:
        line = f"  {label}: {mb:7.1f} MB"
    sys.stderr.write("\r" + line)
    sys.stderr.flush()
