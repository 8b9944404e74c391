"""The delivery policy operators tune, from a validated JSON file (PUSHPIPE_POLICY_FILE, default run/policy.json).

Every key is optional; what the file leaves out comes from the settings (PUSHPIPE_DAILY_CAPS,
PUSHPIPE_VENDOR_QUOTAS, PUSHPIPE_QUIET_HOURS) or the built-in defaults:

    {"daily_caps": {"marketing": 3, "news": 5},      per user per local day and category
     "vendor_quotas": {"hms": 5, "vivo": 3},          marketing messages per device per day by vendor
     "app_kind": "news",                             "other" (vendors' default caps 2) or "news" (5)
     "unclassified_vendors": ["xiaomi"],             vendors without registered message classes
     "quiet_hours": "22:00-08:00",                   the app's quiet window in each user's time zone
     "default_tz": "Asia/Shanghai",                  for users whose zone is unknown
     "classes": {"orders": "service"}}               category -> service or marketing (added to the defaults)

A bad file stops `pushpipe up` (and the job that reads it) with the file, the key and what is expected.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pushpipe.config import QUIET_HOURS, Settings
from pushpipe.jobs.policy import zones
from pushpipe.jobs.policy.caps import CapConfig
from pushpipe.jobs.policy.classify import DEFAULT_CLASSES, MARKETING_PER_DAY, VendorQuota
from pushpipe.jobs.policy.decide import PolicyConfig

Count = Annotated[int, Field(ge=0)]


class PolicyFileError(SystemExit):
    """A policy file that cannot be used; the message names the file, each key and what it expects."""


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_caps: dict[str, Count] | None = None
    vendor_quotas: dict[str, Count] | None = None
    app_kind: Literal["other", "news"] = "other"
    unclassified_vendors: list[str] = []
    quiet_hours: str | None = Field(None, pattern=f"^{QUIET_HOURS}$")
    default_tz: str = zones.UTC
    classes: dict[str, Literal["service", "marketing"]] = {}


def read(path: Path) -> PolicyFile:
    """The file's policy; an empty one when there is no file."""
    if not path.exists():
        return PolicyFile()
    try:
        return PolicyFile.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as bad:
        raise PolicyFileError(f"pushpipe: policy file {path} is not JSON: {bad}") from None
    except ValidationError as bad:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'the document'}: {e['msg']}" for e in bad.errors()]
        raise PolicyFileError(f"pushpipe: policy file {path}:\n  " + "\n  ".join(problems)) from None


def policy_config(settings: Settings) -> PolicyConfig:
    """The policy fan-out applies: the file's, then the settings', then the defaults."""
    found = read(settings.policy_file)
    quiet = found.quiet_hours or settings.quiet_hours
    start, _, end = quiet.partition("-")
    quotas = {**MARKETING_PER_DAY[found.app_kind], **settings.vendor_quotas, **(found.vendor_quotas or {})}
    unclassified = frozenset(found.unclassified_vendors)
    try:
        return PolicyConfig(
            caps=CapConfig(per_day=settings.daily_caps if found.daily_caps is None else found.daily_caps),
            default_tz=found.default_tz, default_quiet=(start, end) if quiet else None,
            classes={**DEFAULT_CLASSES, **found.classes},
            vendor_quota=VendorQuota(app_kind=found.app_kind, marketing_per_day=quotas, unclassified_vendors=unclassified))
    except ValueError as bad:  # an unknown zone, an unclassified vendor without a cap
        raise PolicyFileError(f"pushpipe: policy file {settings.policy_file}: {bad}") from None
