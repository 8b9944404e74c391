"""What the pin and shard directories share: the app's delivery policy and templates, read once per worker, and
the count of tokens they expand a request to."""
from __future__ import annotations

import json

from pyflink.datastream import KeyedProcessFunction, RuntimeContext

from pushpipe.config import Settings
from pushpipe.jobs import runtime
from pushpipe.jobs.counting import StageCounters
from pushpipe.jobs.policy.policyfile import policy_config
from pushpipe.jobs.policy.templates import TemplateStore


class Directory(KeyedProcessFunction):
    clock = staticmethod(runtime.now_ms)
    stage = "directory"  # its name in the metrics

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def open(self, runtime_context: RuntimeContext) -> None:
        self.batch_size = self.settings.batch_size
        self.policy = policy_config(self.settings)
        path = self.settings.templates_file
        self.templates = TemplateStore.from_dict(json.loads(path.read_text()) if path.exists() else {"templates": {}})
        self.counters = StageCounters(runtime_context, self.stage)

    def expanded(self, vendor: str, tokens: int) -> None:
        """Tokens a request was expanded to for a vendor (before batching; what policy kept)."""
        self.counters.count("pushpipe_tokens_expanded", tokens, vendor=vendor)
