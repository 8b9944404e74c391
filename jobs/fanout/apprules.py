"""A registered app's rules on its requests (schemas/apps.py): its environment and the vendors its devices may use.

Fan-out reads the registry once per request, as it takes the request in (ParseRequests), and carries the rules
with it: a scheduled or deferred request keeps the rules it came in with, and no later stage reads the registry.
- the app's environment replaces the request's (as the send API does from the credentials): a test app reaches
  only test devices (jobs/fanout/expand.py);
- a device of a vendor the app may not use is suppressed with reason `vendor_not_allowed`, like a switched-off one;
- an app that is not registered is taken as before apps existed, or, with `app_registry_required`, dead-lettered
  (`unknown_app`).
"""
from __future__ import annotations

from typing import Any

from pushpipe.schemas.apps import App

Record = dict[str, Any]
UNKNOWN_APP = "unknown_app"  # the dead letter's error
VENDOR_NOT_ALLOWED = "vendor_not_allowed"  # a device's suppressed outcome
VENDORS = "app_vendors"  # the request's field carrying the app's vendors (absent or empty: every vendor)


class UnknownApp(ValueError):
    """A request of an app that is not in the registry, when only registered apps are served; the message says so."""


def with_app_rules(request: Record, app: App | None, required: bool) -> Record:
    """The request with its app's rules; UnknownApp for an app not registered when `required`."""
    if app is None:
        if required:
            raise UnknownApp(f"app {request['app_id']!r} is not in the app registry, and only registered apps are served "
                             "(PUSHPIPE_APP_REGISTRY_REQUIRED): `pushpipe app create` registers it")
        return request
    return {**request, "environment": app.environment, VENDORS: list(app.vendors)}


def vendor_allowed(request: Record, vendor: str) -> bool:
    """Whether the request's app may use `vendor` (a request taken before apps were read carries no rule: yes)."""
    allowed = request.get(VENDORS)
    return not allowed or vendor.lower() in allowed
