"""Lint: every issue has a severity, a code and (where it applies) the template line."""

from __future__ import annotations

from promptregistry import LintIssue, PromptSpec, lint


def issues_of(template: str, **variables: str) -> list[tuple[str, str, int | None]]:
    spec = PromptSpec(name="p", template=template, variables=variables)
    return [(i.severity, i.code, i.line) for i in lint(spec)]


def test_clean_template_has_no_issues() -> None:
    spec = PromptSpec(
        name="p",
        template="Hi {{ who }}\n{% for t in tags %}{{ loop.index }} {{ t }}{% endfor %}"
        "{% set n = tags|length %}{{ n }} {{ range(2)|list }}",
        variables={"who": "str", "tags": "list"},
    )
    assert lint(spec) == []


def test_syntax_error_reports_its_line() -> None:
    spec = PromptSpec(
        name="p", template="ok\nok\n{% if x %}\nnever closed\n", variables={"x": "str"}
    )
    [issue] = lint(spec)
    assert (issue.severity, issue.code, issue.line) == ("error", "syntax", 3)
    assert "endif" in issue.message
    assert issue.render().startswith("line 3: error[syntax]: ")
    assert issues_of("one\n{{ x + }}\n", x="str") == [("error", "syntax", 2)]


def test_undeclared_variables_are_errors_at_their_first_line() -> None:
    assert issues_of("Hi {{ who }}\n\n{{ mood }} and {{ mood }}\n{{ place }}", who="str") == [
        ("error", "undeclared-variable", 3),
        ("error", "undeclared-variable", 4),
    ]
    [issue] = lint(PromptSpec(name="p", template="{{ mood }}"))
    assert issue.message == "variable 'mood' is used but not declared in 'variables'"


def test_unused_declared_variables_are_warnings() -> None:
    assert issues_of("Hi {{ who }}", who="str", spare="int") == [
        ("warning", "unused-variable", None)
    ]


def test_empty_template() -> None:
    assert issues_of("") == [("error", "empty", None)]
    assert issues_of("  \n\t\n") == [("error", "empty", None)]


def test_size_limit() -> None:
    spec = PromptSpec(name="p", template="x" * 101)
    assert [(i.code, i.message) for i in lint(spec, max_chars=100)] == [
        ("too-long", "template is 101 characters; the limit is 100")
    ]
    assert lint(spec, max_chars=101) == []
    assert lint(PromptSpec(name="p", template="x" * 20_000)) == []
    assert [i.code for i in lint(PromptSpec(name="p", template="x" * 20_001))] == ["too-long"]


def test_unsafe_attribute_access_is_caught_before_render() -> None:
    template = (
        "fine {{ x.name }}\n"
        "{{ ''.__class__ }}\n"
        "{{ x['__globals__'] }}\n"
        "{{ x|attr('_private') }}\n"
        "{{ x.__class__.__mro__ }}\n"
    )
    issues = issues_of(template, x="dict")
    assert ("error", "unsafe-attribute", 2) in issues
    assert ("error", "unsafe-attribute", 3) in issues
    assert ("error", "unsafe-attribute", 4) in issues
    assert issues.count(("error", "unsafe-attribute", 5)) == 2
    assert all(code == "unsafe-attribute" for _, code, _ in issues)


def test_includes_and_imports_are_refused() -> None:
    template = "{% include 'a.txt' %}\n{% import 'm.j2' as m %}\n{% from 'm.j2' import f %}"
    assert issues_of(template) == [
        ("error", "no-file-access", 1),
        ("error", "no-file-access", 2),
        ("error", "no-file-access", 3),
    ]


def test_issues_are_sorted_by_line_and_serialise() -> None:
    spec = PromptSpec(name="p", template="{{ b }}\n{{ a._x }}", variables={"z": "str"})
    issues = lint(spec)
    assert [i.line for i in issues] == [None, 1, 2, 2]
    assert LintIssue.model_validate(issues[1].model_dump()) == issues[1]
