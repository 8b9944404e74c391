"""The alert rules, checked and unit-tested by promtool (Debian's prometheus package, which make setup installs)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pushpipe.infra import prometheus
from pushpipe.jobs import metrics

ALERTING = Path(prometheus.__file__).parent / "alerting"


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    assert binary, f"promtool is missing: {prometheus.INSTALL_HINT}"
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_rules_are_valid_and_each_fires_on_its_series_and_only_there() -> None:
    assert "SUCCESS: 14 rules found" in promtool("check", "rules", str(ALERTING / "rules.yml"))
    assert "SUCCESS" in promtool("test", "rules", str(ALERTING / "rules_test.yml"))


def test_every_rule_has_a_test() -> None:
    rules = (ALERTING / "rules.yml").read_text()
    tested = (ALERTING / "rules_test.yml").read_text()
    names = [line.split(":", 1)[1].strip() for line in rules.splitlines() if line.strip().startswith("- alert:")]
    assert names and [n for n in names if f"alertname: {n}" not in tested] == []


def test_a_tls_bundle_reports_its_earliest_expiry(tmp_path) -> None:
    from pushpipe.simulators.tls import ensure_tls

    tls = ensure_tls(tmp_path, hosts=("127.0.0.1",))
    expiry = metrics.earliest_expiry(tls.ca_cert.read_bytes())
    assert expiry is not None and expiry > 0
    assert metrics.earliest_expiry(b"not a certificate") is None
