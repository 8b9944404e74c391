"""The alert rules, checked and unit-tested by promtool (Debian's prometheus package, which make setup installs)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from flink_fakes import Harness
from pushpipe.infra import prometheus
from pushpipe.jobs import analytics, metrics
from test_lifecycle import as_input, receipt, result

ALERTING = Path(prometheus.__file__).parent / "alerting"


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    assert binary, f"promtool is missing: {prometheus.INSTALL_HINT}"
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_rules_are_valid_and_each_fires_on_its_series_and_only_there() -> None:
    assert "SUCCESS: 16 rules found" in promtool("check", "rules", str(ALERTING / "rules.yml"))
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


def test_the_delivery_latency_rule_reads_the_histogram_by_the_name_flink_gives_it() -> None:
    """Flink's reporter names an operator's counter flink_taskmanager_job_task_operator_, the keys of its groups, its
    name (jobs/counting.py): a label added to the histogram changes its name, and the rule must follow."""
    harness = Harness(analytics.MessageLifecycle())
    for record in (result([("t1", "accepted")]), receipt("t1", "delivered", 3_400)):
        harness.process(as_input(record), key="a|m1")
    names = {"_".join(["flink_taskmanager_job_task_operator", *(key for key, _ in path), name]) for name, path in harness.metrics.counts}
    (bucket,) = [n for n in names if n.endswith("_pushpipe_accepted_to_delivered_milliseconds_bucket")]
    assert bucket in (ALERTING / "rules.yml").read_text()
