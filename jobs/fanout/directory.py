"""What the pin and shard directories share: the app's delivery policy and templates, read once per worker."""
from __future__ import annotations

import json

from pyflink.datastream import KeyedProcessFunction, RuntimeContext

from pushpipe.config import Settings
from pushpipe.jobs import runtime
from pushpipe.jobs.policy.policyfile import policy_config
from pushpipe.jobs.policy.templates import TemplateStore


class Directory(KeyedProcessFunction):
    clock = staticmethod(runtime.now_ms)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def open(self, runtime_context: RuntimeContext) -> None:
        self.batch_size = self.settings.batch_size
        self.policy = policy_config(self.settings)
        path = self.settings.templates_file
        self.templates = TemplateStore.from_dict(json.loads(path.read_text()) if path.exists() else {"templates": {}})
