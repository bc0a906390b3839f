"""Release bundles on the real example workspace: real git, DVC, MLflow and store."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from releaser.api.audit import verify_audit
from releaser.api.releases import create_release, diff_releases, get_release, list_releases
from releaser.api.workspace import open_workspace
from releaser.demo.workspace import ExampleWorkspace, add_golden_cases
from releaser.errors import ArtifactNotFound, BadInput, NotFound, WorkspaceError

pytestmark = pytest.mark.slow


def _events(root: Path) -> int:
    ws = open_workspace(root)
    try:
        return ws.store.audit_head()[0]
    finally:
        ws.close()


def test_same_inputs_same_id_then_new_data_new_id(release_ws: ExampleWorkspace) -> None:
    ws = open_workspace(release_ws.root)
    try:
        first = create_release(ws, "case-triage")
        assert first.created
        head = ws.store.audit_head()
        again = create_release(ws, "case-triage")
        assert again.release.id == first.release.id and not again.created
        assert ws.store.audit_head() == head, "a repeated create must write nothing"

        add_golden_cases(release_ws, 10, seed=7)
        second = create_release(ws, "case-triage")
        assert second.created and second.release.id != first.release.id
        d = diff_releases(ws, first.release.id[:6], second.release.id)
        paths = {c.path for c in d.changes}
        assert "datasets[data/golden.csv].md5" in paths
        assert "model.version" not in paths
        assert [r.id for r in list_releases(ws, "case-triage")] == [
            first.release.id,
            second.release.id,
        ]
        assert verify_audit(ws).ok
    finally:
        ws.close()


def test_release_pins_every_ref_and_tags_the_model(release_ws: ExampleWorkspace) -> None:
    from mlflow.tracking import MlflowClient

    ws = open_workspace(release_ws.root)
    try:
        rel = create_release(ws, "case-triage").release
    finally:
        ws.close()
    c = rel.content
    assert c.model is not None and c.model.version == 1 and c.model.alias == "champion"
    assert c.model.run_id and c.model.signature
    assert [(p.name, p.version) for p in c.prompts] == [("case-triage-system", 1)]
    assert len(c.prompts[0].content_hash) == 64
    assert [d.path for d in c.datasets] == ["data/golden.csv"]
    assert c.code.dirty is False and c.code.branch == "main"
    assert rel.verify_id()
    client = MlflowClient(release_ws.tracking_uri, release_ws.tracking_uri)
    mv = client.get_model_version("case-triage", "1")
    assert mv.tags.get("releaser.release_id") == rel.id


def test_dirty_tree_is_refused_unless_allowed(release_ws: ExampleWorkspace) -> None:
    (release_ws.root / "model.py").write_text("# edited\n", encoding="utf-8")
    before = _events(release_ws.root)
    ws = open_workspace(release_ws.root)
    try:
        with pytest.raises(WorkspaceError, match="uncommitted changes") as err:
            create_release(ws, "case-triage")
        assert err.value.hint and "--allow-dirty" in err.value.hint
        assert ws.store.audit_head()[0] == before
        dirty = create_release(ws, "case-triage", allow_dirty=True)
        assert dirty.release.content.code.dirty
        assert any("dirty" in w for w in dirty.warnings)
    finally:
        ws.close()


def _edit_config(root: Path, old: str, new: str) -> None:
    cfg = root / "releaser.yaml"
    text = cfg.read_text(encoding="utf-8")
    assert old in text
    cfg.write_text(text.replace(old, new, 1), encoding="utf-8")
    subprocess.run(["git", "commit", "-qam", "edit config"], cwd=root, check=True)


def test_missing_model_alias_names_what_exists_and_writes_nothing(
    release_ws: ExampleWorkspace,
) -> None:
    _edit_config(release_ws.root, "alias: champion", "alias: champoin")
    before = _events(release_ws.root)
    ws = open_workspace(release_ws.root)
    try:
        with pytest.raises(ArtifactNotFound) as err:
            create_release(ws, "case-triage")
        text = f"{err.value.message} {err.value.hint}"
        assert "champoin" in text and "champion" in text
        assert ws.store.audit_head()[0] == before
        assert list_releases(ws) == []
    finally:
        ws.close()


def test_missing_dvc_file_is_a_clear_error(release_ws: ExampleWorkspace) -> None:
    _edit_config(release_ws.root, "path: data/golden.csv", "path: data/goldne.csv")
    _edit_config(release_ws.root, "dataset: data/golden.csv", "dataset: data/goldne.csv")
    ws = open_workspace(release_ws.root)
    try:
        with pytest.raises(ArtifactNotFound, match="goldne"):
            create_release(ws, "case-triage")
        assert list_releases(ws) == []
    finally:
        ws.close()


def test_unknown_release_and_prefix_rules(release_ws: ExampleWorkspace) -> None:
    ws = open_workspace(release_ws.root)
    try:
        rel = create_release(ws, "case-triage").release
        assert get_release(ws, rel.id[:4]).id == rel.id
        with pytest.raises(BadInput, match="too short"):
            get_release(ws, rel.id[:3])
        with pytest.raises(NotFound):
            get_release(ws, "ffffffffffff")
        with pytest.raises(NotFound, match="no service"):
            create_release(ws, "case-triag")
    finally:
        ws.close()
