"""User text in human output is shown, never obeyed; bad list options and names are refused.

A reason reaches the store from anyone who can run a workflow (the rollback workflow
passes its ``reason`` input straight to the CLI). Printed later by ``audit log`` or
``prompt history``, its escape sequences must not retitle, recolour or clear the
operator's terminal, its newline must not forge a row, and rich markup in it must
print as typed. ``--json`` keeps the string exact.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from releaser.demo.workspace import ExampleWorkspace

pytestmark = pytest.mark.slow

# An OSC title change with BEL, an SGR colour, rich markup and a link, a newline that
# would start a forged row, and an 8-bit CSI (C1) "clear screen".
NASTY = (
    "\x1b]0;pwned\x07\x1b[31mred [red]x[/red] [link=https://evil.example]click[/link]"
    "\nforged row\x9b2J"
)
ESCAPED = "\\x1b]0;pwned\\x07\\x1b[31mred"
RAW_CONTROLS = ("\x1b", "\x07", "\x9b")

SPEC = """\
name: triage-summary
commit_message: first
variables:
  case_text: str
template: |
  Summarise the case.
  Case: {{ case_text }}
"""


@pytest.fixture
def prompt_ws(tmp_path: Path, cli) -> Path:
    """A fresh workspace with version 1 of triage-summary promoted to production for NASTY."""
    root = tmp_path / "svc"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    assert cli("init", cwd=root).code == 0
    (root / "v1.yaml").write_text(SPEC, encoding="utf-8")
    assert cli("prompt", "register", "v1.yaml").code == 0
    res = cli("prompt", "promote", "triage-summary", "1", "--to", "production", "--reason", NASTY)
    assert res.code == 0, res.err
    return root


def _assert_defused(text: str) -> None:
    for raw in RAW_CONTROLS:
        assert raw not in text, repr(raw)
    assert ESCAPED in text
    assert "[red]x[/red]" in text and "[link=https://evil.example]click[/link]" in text
    assert "\\nforged row\\x9b2J" in text
    assert not any(line.lstrip().startswith("forged row") for line in text.splitlines())


def test_audit_log_and_prompt_history_escape_control_characters(prompt_ws: Path, cli) -> None:
    res = cli("audit", "log")
    assert res.code == 0, res.err
    _assert_defused(res.out)
    res = cli("prompt", "history", "triage-summary")
    assert res.code == 0, res.err
    _assert_defused(res.out)

    res = cli("audit", "log", "--json")
    assert [e["reason"] for e in json.loads(res.out) if e["action"] == "prompt.alias"] == [NASTY]
    assert "\x9b" not in res.out  # JSON leaves C1 raw; emit_json writes it as \u009b
    res = cli("prompt", "history", "triage-summary", "--json")
    assert [row["reason"] for row in json.loads(res.out)] == [NASTY]


def test_rich_tables_on_a_terminal_print_markup_literally(
    prompt_ws: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("releaser.cli.output.is_tty", lambda stream=None: True)
    for args in (("audit", "log"), ("prompt", "history", "triage-summary")):
        res = cli(*args)
        assert res.code == 0, res.err
        assert "┃" in res.out  # drawn by rich, not the plain-text fallback
        for raw in RAW_CONTROLS:
            assert raw not in res.out, (args, repr(raw))
        assert ESCAPED in res.out
        assert "[red]x[/red]" in res.out
        assert "[link=https://evil.example]click[/link]" in res.out


def test_a_rollout_pause_reason_is_escaped_in_the_audit_log(
    release_ws: ExampleWorkspace, cli, released
) -> None:
    released(release_ws.root)
    res = cli("rollout", "pause", "case-triage", "--reason", NASTY)
    assert res.code == 0, res.err
    res = cli("audit", "log", "--limit", "3")
    assert res.code == 0, res.err
    _assert_defused(res.out)
    events = json.loads(cli("audit", "log", "--json").out)
    assert [e["reason"] for e in events if e["action"] == "rollout.pause"] == [NASTY]


def test_audit_log_limit_must_not_be_negative(prompt_ws: Path, cli) -> None:
    everything = json.loads(cli("audit", "log", "--json").out)
    assert len(everything) >= 2
    for bad in ("-5", "-1"):
        res = cli("audit", "log", "--limit", bad)
        assert res.code == 2, res.out
        assert f"--limit must be 0 or more, got {bad}" in res.err
        assert "hint:" in res.err and "--limit 0" in res.err
        assert "no audit events yet" not in res.out
    # 0 is documented as "all", as audit verify's hint relies on.
    assert json.loads(cli("audit", "log", "--limit", "0", "--json").out) == everything
    assert json.loads(cli("audit", "log", "--limit", "1", "--json").out) == everything[-1:]

    # The library refuses what it cannot answer instead of returning nothing.
    from releaser.api.audit import audit_log
    from releaser.api.workspace import open_workspace
    from releaser.errors import BadInput

    ws = open_workspace(prompt_ws)
    try:
        for limit in (0, -5):
            with pytest.raises(BadInput, match="at least 1") as caught:
                audit_log(ws, limit=limit)
            assert caught.value.hint
            with pytest.raises(BadInput):
                audit_log(ws, limit=limit, subject="prompt:triage-summary")
        assert [e.seq for e in audit_log(ws, limit=1)] == [everything[-1]["seq"]]
    finally:
        ws.close()


def test_prompt_history_refuses_a_name_no_prompt_can_have(prompt_ws: Path, cli) -> None:
    for name, rule in [
        ("../../etc", "path separator"),
        ("..", "contains '..'"),
        ("has space", "contains a space"),
        ("_hidden", "must start with a letter or a digit"),
        ("x" * 129, "the limit is 128"),
    ]:
        res = cli("prompt", "history", name)
        assert res.code == 2, (name, res.out)
        assert rule in res.err and "hint:" in res.err and "Traceback" not in res.err, name
        assert res.out == ""
        res = cli("prompt", "history", name, "--json")
        assert res.code == 2 and rule in json.loads(res.out)["error"]["message"], name
    res = cli("prompt", "history", "triage-summary")  # a valid name still works
    assert res.code == 0 and "production" in res.out
