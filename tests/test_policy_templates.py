"""Pure policy: templates with variables, per-locale variants and locale fallback."""
import pytest

from pushpipe.jobs.policy.templates import Template, TemplateError, TemplateStore, locale_chain, render

DOC = {"templates": {
    "order_shipped": {"default_locale": "en", "variants": {
        "en": {"title": "Order {order} shipped", "body": "Hi {name}, it arrives {day}."},
        "zh": {"title": "订单 {order} 已发货", "body": "{name}，预计{day}送达。"},
        "zh-Hant": {"title": "訂單 {order} 已出貨", "body": "{name}，預計{day}送達。"},
        "de-AT": {"title": "Bestellung {order} versandt", "body": "Servus {name}!"},
    }},
    "braces": {"default_locale": "en", "variants": {
        "en": {"title": "{{literal}} {x}", "body": "{x:>4}|{x!r}"}}},
}}
STORE = TemplateStore.from_dict(DOC)
VARS = {"order": "A-17", "name": "Li", "day": "Fri"}


@pytest.mark.parametrize(("locale", "title"), [
    ("en", "Order A-17 shipped"),
    ("zh-Hant-TW", "訂單 A-17 已出貨"),
    ("zh_Hant_HK", "訂單 A-17 已出貨"),
    ("zh-hant", "訂單 A-17 已出貨"),
    ("zh-CN", "订单 A-17 已发货"),
    ("zh-Hans-CN", "订单 A-17 已发货"),
    ("de-AT", "Bestellung A-17 versandt"),
    ("de-DE", "Order A-17 shipped"),
    ("fr-FR", "Order A-17 shipped"),
    ("", "Order A-17 shipped"),
    (None, "Order A-17 shipped"),
])
def test_locale_fallback(locale, title: str) -> None:
    assert render(STORE, "order_shipped", VARS, locale)[0] == title


def test_locale_chain() -> None:
    assert locale_chain("zh-Hant-TW") == ["zh-hant-tw", "zh-hant", "zh"]
    assert locale_chain("en_US") == ["en-us", "en"]
    assert locale_chain("") == []


def test_render_fills_title_and_body() -> None:
    assert render(STORE, "order_shipped", VARS, "zh-CN") == ("订单 A-17 已发货", "Li，预计Fri送达。")


def test_literal_braces_specs_and_no_reformatting_of_values() -> None:
    assert render(STORE, "braces", {"x": "ab"}, "en") == ("{literal} ab", "  ab|'ab'")
    assert render(STORE, "braces", {"x": "{order}"}, "en")[0] == "{literal} {order}"


def test_missing_variable_names_the_template_locale_part_and_variable() -> None:
    with pytest.raises(TemplateError, match=r"'order_shipped' \(zh-Hant\) body needs variable 'day'.*given: name, order"):
        render(STORE, "order_shipped", {"order": "1", "name": "x"}, "zh-Hant-TW")


def test_unknown_template() -> None:
    with pytest.raises(TemplateError, match="unknown template 'nope'"):
        render(STORE, "nope", VARS, "en")


def test_extra_variables_are_ignored() -> None:
    assert render(STORE, "order_shipped", {**VARS, "unused": "1"}, "de-AT")[1] == "Servus Li!"


def one(title: str, body: str = "", default: str = "en", locale: str = "en") -> dict:
    return {"templates": {"t": {"default_locale": default, "variants": {locale: {"title": title, "body": body}}}}}


@pytest.mark.parametrize(("doc", "reason"), [
    ({}, "needs a 'templates' object"),
    ({"templates": {"t": {"default_locale": "en"}}}, "needs a 'variants' object"),
    ({"templates": {"t": {"default_locale": "en", "variants": {}}}}, "has no variants"),
    (one("x", default="de"), "default locale 'de' has no variant"),
    (one("Total {"), "Single '{'.*literal braces"),
    (one("Total }"), "Single '}'"),
    (one("{0}"), r"field \{0\} must be a plain variable name"),
    (one("{}"), "must be a plain variable name"),
    (one("{user.__class__}"), "must be a plain variable name"),
    (one("{items[0]}"), "must be a plain variable name"),
    ({"templates": {"t": {"default_locale": "en", "variants": {"en": {"title": "a"}, "EN": {"title": "b"}}}}},
     "listed twice"),
])
def test_bad_templates_are_refused_when_loaded(doc: dict, reason: str) -> None:
    with pytest.raises(TemplateError, match=reason):
        TemplateStore.from_dict(doc)


def test_format_spec_errors_become_template_errors() -> None:
    store = TemplateStore({"n": Template("n", {"en": ("{count:d}", "")}, "en")})
    with pytest.raises(TemplateError, match=r"'n' \(en\) title"):
        render(store, "n", {"count": "three"}, "en")
