"""FileChangeSignal: the token changes on every bump, atomically, across processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from promptregistry import BackendUnavailable, ChangeSignal, FileChangeSignal


def test_token_changes_on_every_bump(tmp_path: Path) -> None:
    signal = FileChangeSignal(tmp_path / "sub" / "signal")
    assert isinstance(signal, ChangeSignal)
    assert signal.token() == ""
    seen = {signal.token()}
    for _ in range(50):  # many bumps within one clock tick must still differ
        signal.bump()
        token = signal.token()
        assert token not in seen
        seen.add(token)
    assert signal.token() == signal.token()
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["signal"]  # no temp files left


def test_bump_in_another_process_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "signal"
    signal = FileChangeSignal(path)
    before = signal.token()
    code = (
        "import sys; from promptregistry import FileChangeSignal; "
        "FileChangeSignal(sys.argv[1]).bump()"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    assert signal.token() != before


def test_bump_failure_is_backend_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(BackendUnavailable, match="cannot update change signal"):
        FileChangeSignal(blocker / "signal").bump()
