"""Elasticsearch 8.19 single node, from the integ-test-zip distribution on Maven Central.

That distribution ships without a JDK (ES_JAVA_HOME points at Java 17) and with only the
modules transport-netty4, x-pack-core, x-pack-security and apm: core APIs (bulk, get,
search, aggregations, partial-document update, external versioning, index templates)
work, but there is no script engine (lang-painless: scripted updates answer
"script_lang not supported"), no ingest-common, reindex (_update_by_query), mapper-extras,
analysis-common or rest-root module (GET / answers 405, so the Python client's ping() is
False and info() raises: check health with GET /_cluster/health instead).

Elasticsearch refuses to run as root. As root we start it inside a user namespace in
which our uid is mapped to an ordinary uid (`unshare --user --map-user`): the files it
writes stay root-owned on the host and no user, chown or path permission change is
needed. Where user namespaces are unavailable we fall back to a dedicated system user.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import urllib.request
import zipfile
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from pushpipe.config import Settings
from pushpipe.infra import process
from pushpipe.infra.download import fetch, maven_url
from pushpipe.infra.service import Health

ES_VERSION = "8.19.21"
JAVA_HOME_DEFAULT = "/usr/lib/jvm/java-17-openjdk-amd64"
TRANSPORT_OFFSET = 100  # transport port = HTTP port + 100 (19300 by default)
HEAP = ("-Xms512m", "-Xmx1g")
NAMESPACE_UID = 1000  # the uid Elasticsearch sees inside the user namespace
FALLBACK_USER = "pushpipe-es"

# Health checks go straight to the node, never through an http_proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Elasticsearch:
    """Single-node Elasticsearch on settings.es_url, security disabled."""

    name = "elasticsearch"
    version = ES_VERSION

    # --- paths -----------------------------------------------------------------------
    def home(self, settings: Settings) -> Path:
        return settings.cache_dir / f"elasticsearch-{self.version}"

    def base(self, settings: Settings) -> Path:
        """run_dir/elasticsearch: config, data, logs, tmp, pid and log file."""
        return process.service_dir(settings, self.name)

    def address(self, settings: Settings) -> str:
        return settings.es_url

    # --- Service ---------------------------------------------------------------------
    def install(self, settings: Settings) -> None:
        """Download and unpack the distribution into cache_dir (skipped once unpacked)."""
        home = self.home(settings)
        if (home / "bin" / "elasticsearch").exists():
            return
        archive = fetch(
            maven_url("org.elasticsearch.distribution.integ-test-zip", "elasticsearch", self.version, ext="zip"),
            settings.cache_dir / "elasticsearch" / f"elasticsearch-{self.version}.zip",
        )
        staging = settings.cache_dir / f".unpack-elasticsearch-{self.version}"
        shutil.rmtree(staging, ignore_errors=True)
        _unzip(archive, staging)
        (staging / f"elasticsearch-{self.version}").rename(home)
        shutil.rmtree(staging)

    def start(self, settings: Settings) -> None:
        if not process.needs_start(settings, self.name, lambda: self.health(settings).ok):
            return
        self.install(settings)
        conf = self._write_config(settings)
        argv = [str(self.home(settings) / "bin" / "elasticsearch")]
        env = {
            "ES_JAVA_HOME": _java_home(),
            "ES_PATH_CONF": str(conf),
            "ES_TMPDIR": str(self.base(settings) / "tmp"),
            "ES_JAVA_OPTS": "",
        }
        user = None
        if os.geteuid() == 0:
            if _userns_available():
                argv = ["unshare", "--user", f"--map-user={NAMESPACE_UID}", f"--map-group={NAMESPACE_UID}", "--", *argv]
            else:
                user = _fallback_user()
                _chown_tree(self.base(settings), user)
        process.start(settings, self.name, argv, env=env, cwd=self.base(settings), user=user)
        process.wait_until(
            lambda: self.health(settings).ok, 180, f"Elasticsearch on {self.address(settings)}",
            settings=settings, name=self.name,
        )

    def stop(self, settings: Settings) -> None:
        process.stop(settings, self.name, timeout=60)

    def health(self, settings: Settings) -> Health:
        try:
            with _DIRECT.open(f"{settings.es_url}/_cluster/health", timeout=3) as resp:
                status = json.load(resp).get("status", "unknown")
        except (OSError, ValueError) as err:
            return Health(False, str(err))
        return Health(status in ("green", "yellow"), f"cluster {status}")

    # --- internals -------------------------------------------------------------------
    def _write_config(self, settings: Settings) -> Path:
        """A private copy of config/ (Elasticsearch writes its keystore there) plus our settings."""
        base = self.base(settings)
        conf = base / "config"
        if not conf.exists():
            shutil.copytree(self.home(settings) / "config", conf)
        for sub in ("data", "logs", "tmp"):
            (base / sub).mkdir(exist_ok=True)
        url = urlsplit(settings.es_url)
        http_port = url.port or 9200
        yml = {
            "cluster.name": "pushpipe",
            "node.name": "pushpipe-1",
            "path.data": str(base / "data"),
            "path.logs": str(base / "logs"),
            "network.host": url.hostname or "127.0.0.1",
            "http.port": http_port,
            "transport.port": http_port + TRANSPORT_OFFSET,
            "discovery.type": "single-node",
            "xpack.security.enabled": "false",
            "xpack.ml.enabled": "false",  # registered by x-pack-core even without the ML module
            "cluster.routing.allocation.disk.threshold_enabled": "false",
            "action.auto_create_index": "true",
        }
        (conf / "elasticsearch.yml").write_text("".join(f"{k}: {v}\n" for k, v in yml.items()))
        (conf / "jvm.options.d" / "pushpipe.options").write_text("\n".join(HEAP) + "\n")
        return conf


def _unzip(archive: Path, dest: Path) -> None:
    """Extract keeping the Unix permission bits (zipfile alone drops the executable bit)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o7777
            if mode:
                path.chmod(mode)


@cache
def _userns_available() -> bool:
    """Can we map ourselves to an unprivileged uid in a new user namespace?"""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", f"--map-user={NAMESPACE_UID}", f"--map-group={NAMESPACE_UID}", "id", "-u"],
        capture_output=True, text=True,
    )
    return probe.returncode == 0 and probe.stdout.strip() == str(NAMESPACE_UID)


def _fallback_user() -> str:
    """A system user to run as when user namespaces are not available."""
    try:
        pwd.getpwnam(FALLBACK_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER],
            check=True,
        )
    return FALLBACK_USER


def _chown_tree(root: Path, user: str) -> None:
    """Give run_dir/elasticsearch to user (the install dir only needs to be readable)."""
    entry = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _java_home() -> str:
    """ES_JAVA_HOME or JAVA_HOME if set, else Debian's Java 17."""
    return os.environ.get("ES_JAVA_HOME") or os.environ.get("JAVA_HOME") or JAVA_HOME_DEFAULT
