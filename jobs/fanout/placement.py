"""Where a device's copy of a message goes: the group of its vendor and rendered text, or why it cannot be sent.

The pin directory and the shard directory both place devices here, so a pin push and a broadcast render
templates and check vendor payload limits by the same rules. A notification is rendered and checked once
per (vendor, locale) of a request, not once per device.
"""
from __future__ import annotations

import hashlib
from typing import Any

from pushpipe.jobs.fanout.devices import Target
from pushpipe.jobs.policy.limits import payload_problems
from pushpipe.jobs.policy.templates import TemplateError, TemplateStore, render

Record = dict[str, Any]
GroupKey = tuple[str, str]  # (vendor, variant of the rendered text)


class Placement:
    """One request's devices grouped by vendor and rendered text, each group with the request it is sent as."""

    def __init__(self, request: Record, templates: TemplateStore) -> None:
        self.request, self.templates = request, templates
        self.groups: dict[GroupKey, tuple[Record, list[Target]]] = {}
        self._places: dict[tuple[str, str], GroupKey | str] = {}  # (vendor, locale) -> group, or why not

    def place(self, target: Target, vendor: str, locale: str) -> str | None:
        """Put the device into its group; the reason it cannot be sent, or None."""
        where = (vendor, locale)
        group = self._places.get(where)
        if group is None:
            group = self._places[where] = self._group(vendor, locale)
        if isinstance(group, str):
            return group
        self.groups[group][1].append(target)
        return None

    def _group(self, vendor: str, locale: str) -> GroupKey | str:
        try:
            notification = rendered(self.request["notification"], locale, self.templates)
        except TemplateError as bad:
            return f"template: {bad}"
        problems = payload_problems(notification, vendor)
        if problems:
            return "; ".join(problems)
        key = (vendor, variant(notification))
        if key not in self.groups:
            self.groups[key] = ({**self.request, "notification": notification}, [])
        return key


def rendered(notification: Record, locale: str, templates: TemplateStore) -> Record:
    """The notification with its template (if any) rendered for the device's locale."""
    if not notification.get("template_id"):
        return notification
    title, body = render(templates, notification["template_id"], notification["template_vars"], locale)
    return {**notification, "title": title, "body": body}


def variant(notification: Record) -> str:
    """A short key for what the user will see, so one batch carries one text."""
    return hashlib.blake2s(f"{notification['title']}\0{notification['body']}".encode(), digest_size=6).hexdigest()
