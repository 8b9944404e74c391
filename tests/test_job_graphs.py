"""The three jobs' graphs as Flink builds them (with the jobs' jars, nothing run, no service needed): every keyed stage takes its
input without PyFlink's key-by task and every side output goes on without its identity map (jobs/runtime.py
`keyed`, `side_output`)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pushpipe.config import Settings
from pushpipe.infra.flink import pipeline_jars

pytestmark = pytest.mark.stack  # needs the jobs' jars (fetched with the stack), not its services
KEY_BY_TASK = "_stream_key_by_map_operator"  # PyFlink's key_by: a Python operator of its own after a union
IDENTITY_MAP = "Map"  # PyFlink's get_side_output: a Python identity map per side-output record


# Built in a Python of its own: a job's environment sets PYTHONPATH and starts a JVM, which must not leak into the
# processes that later tests start (a wheel's venv, a Flink cluster).
PLAN = """import json, sys
from importlib import import_module
from pushpipe.config import load
settings = load().model_copy(update={"pipeline_jars": sys.argv[2]})
print(json.dumps(import_module(sys.argv[1]).build(settings).get_execution_plan()))"""


@pytest.mark.parametrize("job", ["pushpipe.jobs.fanout.job", "pushpipe.jobs.dispatch", "pushpipe.jobs.analytics"])
def test_a_jobs_keyed_stages_and_side_outputs_add_no_operators(settings: Settings, job: str) -> None:
    built = subprocess.run([sys.executable, "-c", PLAN, job, pipeline_jars(settings)], capture_output=True, text=True,
                           timeout=300, check=True)
    plan = json.loads(json.loads(built.stdout.strip().splitlines()[-1]))
    names = [node["contents"] for node in plan["nodes"]]
    keyed = [name for name in names if name == "key"]
    assert keyed, f"the keys are computed in maps chained to each input: {names}"
    assert KEY_BY_TASK not in names and IDENTITY_MAP not in names, names
