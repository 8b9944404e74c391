"""The three jobs' graphs as Flink builds them (with the jobs' jars, nothing run, no service needed): every keyed stage takes its
input without PyFlink's key-by task and every side output goes on without its identity map (jobs/runtime.py
`keyed`, `side_output`)."""
from __future__ import annotations

import json
from types import ModuleType

import pytest

from pushpipe.config import Settings
from pushpipe.infra.flink import pipeline_jars
from pushpipe.jobs import analytics, dispatch
from pushpipe.jobs.fanout import job as fanout

pytestmark = pytest.mark.stack  # needs the jobs' jars (fetched with the stack), not its services
KEY_BY_TASK = "_stream_key_by_map_operator"  # PyFlink's key_by: a Python operator of its own after a union
IDENTITY_MAP = "Map"  # PyFlink's get_side_output: a Python identity map per side-output record


@pytest.mark.parametrize("job", [fanout, dispatch, analytics], ids=["fanout", "dispatch", "analytics"])
def test_a_jobs_keyed_stages_and_side_outputs_add_no_operators(settings: Settings, job: ModuleType) -> None:
    with_jars = settings.model_copy(update={"pipeline_jars": pipeline_jars(settings)})
    plan = json.loads(job.build(with_jars).get_execution_plan())
    names = [node["contents"] for node in plan["nodes"]]
    keyed = [name for name in names if name == "key"]
    assert keyed, f"the keys are computed in maps chained to each input: {names}"
    assert KEY_BY_TASK not in names and IDENTITY_MAP not in names, names
