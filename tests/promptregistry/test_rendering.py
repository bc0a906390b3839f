"""Rendering: exact variables, declared types, the sandbox, compile-once caching."""

from __future__ import annotations

from typing import Any

import pytest

from promptregistry import InvalidPrompt, PromptSpec, RenderError, render
from promptregistry.rendering import compile_template

SPEC = PromptSpec(
    name="typed",
    template=(
        "{{ who }} has {{ n }} items at {{ ratio }}; vip={{ vip }}; "
        "{% for t in tags %}[{{ t }}]{% endfor %} {{ profile.city }}"
    ),
    variables={
        "who": "str",
        "n": "int",
        "ratio": "float",
        "vip": "bool",
        "tags": "list",
        "profile": "dict",
    },
)
GOOD: dict[str, Any] = {
    "who": "Ann",
    "n": 3,
    "ratio": 0.5,
    "vip": True,
    "tags": ["a", "b"],
    "profile": {"city": "Oslo"},
}


def test_renders_with_exactly_the_declared_variables() -> None:
    assert render(SPEC, **GOOD) == "Ann has 3 items at 0.5; vip=True; [a][b] Oslo"


def test_no_autoescape_and_text_is_kept_verbatim() -> None:
    spec = PromptSpec(name="raw", template="<b>{{ x }}</b> & co\n", variables={"x": "str"})
    assert render(spec, x="<i>'\"") == "<b><i>'\"</b> & co\n"


def test_a_variable_may_be_called_version_or_spec() -> None:
    spec = PromptSpec(
        name="kw", template="{{ version }}/{{ spec }}", variables={"version": "int", "spec": "str"}
    )
    assert render(spec, version=2, spec="s") == "2/s"


def test_missing_variable_is_named() -> None:
    with pytest.raises(RenderError, match=r"missing variable\(s\): profile, tags") as info:
        render(SPEC, who="Ann", n=3, ratio=0.5, vip=True)
    assert "who: str" in (info.value.hint or "")


def test_unexpected_variable_is_named() -> None:
    with pytest.raises(RenderError, match=r"unexpected variable\(s\): mood"):
        render(SPEC, **GOOD, mood="happy")


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("n", "3", "must be int, got str"),
        ("n", True, "must be int, got bool"),
        ("n", 3.0, "must be int, got float"),
        ("ratio", "0.5", "must be float, got str"),
        ("vip", 1, "must be bool, got int"),
        ("tags", "a,b", "must be list, got str"),
        ("profile", ["Oslo"], "must be dict, got list"),
        ("who", None, "must be str, got NoneType"),
    ],
)
def test_types_are_checked(var: str, value: object, expected: str) -> None:
    with pytest.raises(RenderError, match=expected):
        render(SPEC, **{**GOOD, var: value})


def test_ints_are_accepted_as_floats() -> None:
    assert "at 1;" in render(SPEC, **{**GOOD, "ratio": 1})


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ x.__class__.__mro__ }}",
        "{{ x[0].__globals__ }}",
        "{{ x['__class__'] }}",
        "{{ x|attr('__class__') }}",
        "{{ x.append(1) }}",
    ],
)
def test_sandbox_escapes_are_refused_at_render(template: str) -> None:
    spec = PromptSpec(name="escape", template=template, variables={"x": "list"})
    with pytest.raises(RenderError, match="refused by the sandbox"):
        render(spec, x=[render])


def test_nested_undefined_is_an_error() -> None:
    with pytest.raises(RenderError, match="has no attribute 'city'"):
        render(SPEC, **{**GOOD, "profile": {}})


def test_no_file_or_template_access() -> None:
    spec = PromptSpec(name="inc", template="{% include 'secrets.txt' %}")
    with pytest.raises(RenderError, match="no loader"):
        render(spec)


def test_errors_from_template_expressions_are_render_errors() -> None:
    spec = PromptSpec(name="div", template="{{ n / 0 }}", variables={"n": "int"})
    with pytest.raises(RenderError, match="ZeroDivisionError"):
        render(spec, n=1)
    big = PromptSpec(name="big", template="{{ range(10**9)|list|length }}")
    with pytest.raises(RenderError, match="Range too big"):
        render(big)


def test_syntax_errors_are_invalid_prompts() -> None:
    spec = PromptSpec(name="broken", template="line one\n{% if x %}never closed")
    with pytest.raises(InvalidPrompt, match="syntax error on line 2"):
        render(spec)


def test_templates_compile_once_per_content() -> None:
    first = compile_template(SPEC)
    assert compile_template(SPEC) is first
    same_content = PromptSpec(name="another-name", template=SPEC.template, variables=SPEC.variables)
    assert compile_template(same_content) is first
    changed = SPEC.model_copy(update={"template": SPEC.template + "!"})
    assert compile_template(changed) is not first


@pytest.mark.parametrize(
    ("template", "words"),
    [
        # Loops and calls count as steps, all together.
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "more than 1,000,000 loop iterations and calls",
        ),
        ("{% for i in range(100000) %}{{ i % 10 }}{{ i % 7 }}{% endfor %}", None),
        ("{{ text * 100000000 }}", "a value of more than 1,000,000 characters"),
        ("{{ [text] * 100000000 }}", "a value of more than 1,000,000 characters"),
        ("{{ text|center(2000000000) }}", "a width or count of more than 1,000,000"),
        ("{{ text.ljust(2000000000) }}", "a width or count of more than 1,000,000"),
        ("{{ '%2000000000s' % text }}", "a format with a width of a million"),
        ("{{ '%2000000000s'|format(text) }}", "a format with a width of a million"),
        ("{{ '{:>2000000000}'.format(text) }}", "a format with a width of a million"),
        ("{{ 2 ** 100000000 }}", "an integer of more than 4096 bits"),
        ("{{ n * n * n * n }}", None),
        # A value that doubles on each call stops when it gets big, not when memory runs out.
        (
            "{% macro d(s, k) %}{% if k %}{{ d(s ~ s, k - 1) }}{% else %}{{ s|length }}"
            "{% endif %}{% endmacro %}{{ d(text, 64) }}",
            "a value of more than 1,000,000 characters",
        ),
        ("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}", "macros call each other too deeply"),
        ("{% for i in range(100000) %}{{ text * 11 }}{% endfor %}", "characters of output"),
    ],
)
def test_renders_stop_at_their_limits_before_the_memory_or_time_is_spent(
    template: str, words: str | None
) -> None:
    spec = PromptSpec(name="p", template=template, variables={"text": "str", "n": "int"})
    if words is None:  # near the limits, but within them
        assert render(spec, text="ab", n=10**9)
        return
    with pytest.raises(RenderError, match=words) as err:
        render(spec, text="ab", n=10**9)
    assert err.value.hint is not None


def test_a_render_that_calls_without_end_stops_at_the_time_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from promptregistry import rendering

    # 2**40 macro calls, each under every other limit; a short clock makes the test quick.
    monkeypatch.setattr(rendering, "LIMITS", rendering.RenderLimits(seconds=0.2))
    spec = PromptSpec(
        name="p",
        template="{% macro f(k) %}{% if k %}{{ f(k - 1) }}{{ f(k - 1) }}{% endif %}{% endmacro %}"
        "{{ f(40) }}",
    )
    with pytest.raises(RenderError, match=r"longer than 0\.2 s"):
        render(spec)


def test_namespace_the_one_mutable_object_is_not_offered() -> None:
    spec = PromptSpec(name="p", template="{% set ns = namespace(a=1) %}{{ ns.a }}")
    with pytest.raises(RenderError, match="'namespace' is undefined"):
        render(spec)


def test_loops_keep_their_loop_variables_and_else_branches() -> None:
    spec = PromptSpec(
        name="p",
        template="{% for x in items %}{{ loop.index }}/{{ loop.length }}:{{ x }}"
        "{% if not loop.last %},{% endif %}{% else %}none{% endfor %}",
        variables={"items": "list"},
    )
    assert render(spec, items=["a", "b", "c"]) == "1/3:a,2/3:b,3/3:c"
    assert render(spec, items=[]) == "none"
