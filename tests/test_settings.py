"""Settings are validated at start, with the variable's name and what it expects; secrets never shown."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pushpipe.config import Settings, SettingsError, load, masked_url
from pushpipe.infra import stack
from pushpipe.infra.service import Health

PASSWORD = "hunter2-s3cret"


def test_defaults_describe_the_embedded_stack(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PUSHPIPE_HOME", str(tmp_path))
    settings = load()
    assert settings.kafka_bootstrap == "127.0.0.1:19092" and settings.daily_caps == {"marketing": 3}
    assert settings.vendors_file == tmp_path / "run" / "vendors.json" and settings.policy_file == tmp_path / "run" / "policy.json"


def test_the_schema_registry_is_the_embedded_simulator_unless_one_of_your_own_or_none_is_set(monkeypatch) -> None:
    for name in ("PUSHPIPE_SCHEMA_REGISTRY_URL", "PUSHPIPE_SCHEMA_REGISTRY_MODE"):
        monkeypatch.delenv(name, raising=False)
    assert (load().schema_registry_url, load().schema_registry_mode) == ("http://127.0.0.1:18481", "embedded")
    monkeypatch.setenv("PUSHPIPE_SCHEMA_REGISTRY_URL", "")
    assert load().schema_registry_url == ""  # none: the stack starts no registry
    monkeypatch.setenv("PUSHPIPE_SCHEMA_REGISTRY_MODE", "server")
    monkeypatch.setenv("PUSHPIPE_SCHEMA_REGISTRY_URL", f"http://sr:{PASSWORD}@a:8081/, https://b:8081")
    settings = load()
    assert settings.schema_registry_url == f"http://sr:{PASSWORD}@a:8081,https://b:8081" and PASSWORD not in str(settings.masked())


@pytest.mark.parametrize("url", ["https://127.0.0.1:18481", "http://a:8081,http://b:8081"])
def test_the_embedded_registry_takes_one_plain_http_url(monkeypatch, url: str) -> None:
    monkeypatch.delenv("PUSHPIPE_SCHEMA_REGISTRY_MODE", raising=False)
    monkeypatch.setenv("PUSHPIPE_SCHEMA_REGISTRY_URL", url)
    with pytest.raises(SettingsError, match="PUSHPIPE_SCHEMA_REGISTRY_MODE: .*one http:// URL"):
        load()


@pytest.mark.parametrize("name, value, expected", [
    ("KAFKA_PARTITIONS", "four", "valid integer"),
    ("KAFKA_PARTITIONS", "0", "greater than or equal to 1"),
    ("CLICKHOUSE_MODE", "cloud", "'embedded' or 'server'"),
    ("ES_URL", "localhost:9200", "http:// or https:// URL"),
    ("DAILY_CAPS", "marketing:3", "name=count pairs"),
    ("QUIET_HOURS", "10pm-7am", "should match pattern"),
    ("BATCH_SIZE", "5000", "less than or equal to 1000"),
    ("SCHEMA_REGISTRY_URL", "localhost:8081", "http:// or https:// URLs"),
    ("SCHEMA_REGISTRY_URL", "http://a:8081,", "http:// or https:// URLs"),
])
def test_a_bad_value_names_its_variable_and_what_it_expects(monkeypatch, name: str, value: str, expected: str) -> None:
    monkeypatch.setenv(f"PUSHPIPE_{name}", value)
    with pytest.raises(SettingsError) as bad:
        load()
    assert f"PUSHPIPE_{name}:" in str(bad.value) and expected in str(bad.value)


def test_the_cli_says_what_is_wrong_without_a_traceback_or_the_password() -> None:
    env = {**os.environ, "PUSHPIPE_KAFKA_PARTITIONS": "x", "PUSHPIPE_CLICKHOUSE_URL": f"ftp://default:{PASSWORD}@db:8123"}
    done = subprocess.run([sys.executable, "-m", "pushpipe.cli", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "PUSHPIPE_KAFKA_PARTITIONS" in done.stderr and "PUSHPIPE_CLICKHOUSE_URL" in done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr + done.stdout


def test_masked_settings_and_status_hide_passwords(monkeypatch) -> None:
    settings = load(clickhouse_url=f"http://default:{PASSWORD}@127.0.0.1:18123")
    assert settings.masked()["clickhouse_url"] == "http://default:***@127.0.0.1:18123"
    assert PASSWORD not in str(settings.masked())
    assert masked_url(f"connect to https://u:{PASSWORD}@h/x failed") == "connect to https://u:***@h/x failed"

    class Component:
        name, version = "clickhouse", "server"

        def address(self, s) -> str:
            return s.clickhouse_url

        def health(self, s) -> Health:
            return Health(False, f"no answer from {s.clickhouse_url}")

    monkeypatch.setattr(stack, "components", lambda settings: [Component()])
    monkeypatch.setattr(stack.restarts, "load", lambda s: {})
    table = stack.format_table(stack.STATUS_HEADER, stack.status_rows(settings))
    assert "default:***@127.0.0.1" in table and PASSWORD not in table


def test_settings_made_in_code_reach_a_child_process_through_its_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    made = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:29892", kafka_brokers=3, daily_caps={"marketing": 3}, stage_metrics=False)
    for name, value in made.environ().items():
        monkeypatch.setenv(name, value)
    assert Settings() == made
