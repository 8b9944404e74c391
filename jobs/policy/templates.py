"""Notification templates with variables and per-locale variants.

A template has a (title, body) pair per locale. Text uses str.format fields by name only:
"Order {order} shipped". Write literal braces doubled: "{{" renders "{" and "}}" renders "}".
Positional fields ("{}", "{0}") and attribute or index access ("{a.b}", "{a[0]}") are rejected
when the store is loaded, so a template can never reach into a variable's attributes. Format specs
("{name:>10}") and conversions ("{name!r}") are allowed.

Locale fallback: "zh-Hant-TW" -> "zh-Hant" -> "zh" -> the template's default locale; "_" is read
as "-" and matching is case-insensitive (BCP 47).
"""
from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_FORMATTER = string.Formatter()


class TemplateError(ValueError):
    """A template that cannot be loaded or rendered; the message says which and why."""


def _fields(text: str, where: str) -> frozenset[str]:
    """The variable names `text` uses; TemplateError for bad braces or non-name fields."""
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as bad:
        raise TemplateError(f"{where}: {bad} (write literal braces as '{{{{' and '}}}}')") from None
    names: set[str] = set()
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise TemplateError(f"{where}: field {{{name}}} must be a plain variable name")
        names |= {name} | _fields(spec or "", where)
    return frozenset(names)


def locale_chain(locale: str | None) -> list[str]:
    """Lower-cased candidates from most to least specific: "zh-Hant-TW" -> ["zh-hant-tw", "zh-hant", "zh"]."""
    parts = (locale or "").replace("_", "-").strip().lower().split("-")
    parts = [p for p in parts if p]
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]


@dataclass(frozen=True)
class Template:
    """One template: locale -> (title, body), and the locale used when nothing closer exists."""

    id: str
    variants: Mapping[str, tuple[str, str]]
    default_locale: str
    _by_key: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.variants:
            raise TemplateError(f"template {self.id!r} has no variants")
        variants = {locale: (title, body) for locale, (title, body) in dict(self.variants).items()}
        by_key: dict[str, str] = {}
        for locale, (title, body) in variants.items():
            chain = locale_chain(locale)
            key = chain[0] if chain else ""
            if not key or key in by_key:
                raise TemplateError(f"template {self.id!r}: locale {locale!r} is empty or listed twice")
            by_key[key] = locale
            for part, text in (("title", title), ("body", body)):
                if not isinstance(text, str):
                    raise TemplateError(f"template {self.id!r} ({locale}) {part} must be a string")
                _fields(text, f"template {self.id!r} ({locale}) {part}")
        if self.default_locale not in variants:
            raise TemplateError(f"template {self.id!r}: default locale {self.default_locale!r} has no variant")
        object.__setattr__(self, "variants", variants)
        object.__setattr__(self, "_by_key", by_key)

    def resolve_locale(self, locale: str | None) -> str:
        """The variant's locale to use for `locale`, following the fallback chain."""
        for key in locale_chain(locale):
            if key in self._by_key:
                return self._by_key[key]
        return self.default_locale


@dataclass(frozen=True)
class TemplateStore:
    templates: Mapping[str, Template] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> TemplateStore:
        """From {"templates": {id: {"default_locale": "en", "variants": {"en": {"title", "body"}}}}}."""
        entries = doc.get("templates") if isinstance(doc, Mapping) else None
        if not isinstance(entries, Mapping):
            raise TemplateError("template document needs a 'templates' object")
        return cls({tid: _template(tid, entry) for tid, entry in entries.items()})

    def get(self, template_id: str) -> Template:
        try:
            return self.templates[template_id]
        except KeyError:
            raise TemplateError(f"unknown template {template_id!r}") from None


def _template(tid: str, entry: Any) -> Template:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("variants"), Mapping):
        raise TemplateError(f"template {tid!r} needs a 'variants' object")
    variants = {}
    for locale, variant in entry["variants"].items():
        if not isinstance(variant, Mapping):
            raise TemplateError(f"template {tid!r} ({locale}) must be an object with title and body")
        variants[locale] = (variant.get("title", ""), variant.get("body", ""))
    return Template(tid, variants, entry.get("default_locale", ""))


class _Strict(dict[str, Any]):
    def __init__(self, values: Mapping[str, Any], where: str) -> None:
        super().__init__(values)
        self.where = where

    def __missing__(self, key: str) -> Any:
        given = ", ".join(sorted(self)) or "none"
        raise TemplateError(f"{self.where} needs variable {key!r}, which was not given (given: {given})")


def render(store: TemplateStore, template_id: str, vars: Mapping[str, Any],
           locale: str | None) -> tuple[str, str]:
    """(title, body) of `template_id` in the closest locale, variables filled in; TemplateError otherwise."""
    template = store.get(template_id)
    chosen = template.resolve_locale(locale)
    rendered = []
    for part, text in zip(("title", "body"), template.variants[chosen], strict=True):
        where = f"template {template_id!r} ({chosen}) {part}"
        try:
            rendered.append(text.format_map(_Strict(vars, where)))
        except TemplateError:
            raise
        except (ValueError, TypeError) as bad:  # e.g. a format spec that does not fit the value
            raise TemplateError(f"{where}: {bad}") from None
    return rendered[0], rendered[1]
