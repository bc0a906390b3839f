"""Release ids are content hashes: same content, same id; any change, a new id."""

from __future__ import annotations

from releaser.core.refs import CodeRef, DatasetRef, ModelRef, PromptRef
from releaser.core.release import Release, ReleaseContent, diff_content, release_id


def _content(md5: str = "a" * 32, prompt_version: int = 1) -> ReleaseContent:
    return ReleaseContent(
        service="case-triage",
        model=ModelRef(
            name="case-triage",
            version=3,
            alias="champion",
            run_id="r1",
            source="models:/m-1",
            signature=None,
            model_uri="models:/case-triage/3",
        ),
        prompts=[
            PromptRef(name="sys", version=prompt_version, alias="production", content_hash="c" * 64)
        ],
        datasets=[
            DatasetRef(
                path="data/golden.csv", md5=md5, size=10, nfiles=None, rev="b" * 40, remote="local"
            )
        ],
        code=CodeRef(sha="d" * 40, branch="main", dirty=False, remote_url=None),
        config={"slos": {"error_rate": 0.01}},
        config_hash="e" * 64,
    )


def test_same_content_same_id_whoever_creates_it() -> None:
    a = Release.build(_content(), created_at="2026-01-01T00:00:00Z", created_by="alice")
    b = Release.build(_content(), created_at="2026-02-02T00:00:00Z", created_by="bob")
    assert a.id == b.id == release_id(_content())
    assert len(a.id) == 16
    assert a.bucketing_seed == b.bucketing_seed


def test_changed_data_changes_id_and_shows_in_diff() -> None:
    old, new = _content(), _content(md5="f" * 32)
    assert release_id(old) != release_id(new)
    changes = diff_content(old, new)
    assert [c.path for c in changes] == ["datasets[data/golden.csv].md5"]
    assert changes[0].before == "a" * 32 and changes[0].after == "f" * 32


def test_prompt_version_change_is_named_by_prompt() -> None:
    paths = [c.path for c in diff_content(_content(), _content(prompt_version=2))]
    assert paths == ["prompts[sys].version"]


def test_edited_release_no_longer_verifies() -> None:
    rel = Release.build(_content(), created_at="t", created_by="a")
    tampered = rel.model_copy(update={"content": _content(md5="0" * 32)})
    assert rel.verify_id()
    assert not tampered.verify_id()


def test_a_pinned_judge_changes_the_id_and_a_change_of_judge_shows_in_the_diff() -> None:
    from releaser.core.canonical import content_hash

    plain = _content()
    # Without judges the id is what it always was: the hash of the content without the key.
    legacy = plain.model_dump(mode="json")
    del legacy["judges"]
    assert release_id(plain) == content_hash(legacy)[:16]

    def judged(version: int) -> ReleaseContent:
        judge = PromptRef(name="reply-judge", version=version, alias="production", content_hash="c")
        return plain.model_copy(update={"judges": [judge]})

    assert len({release_id(plain), release_id(judged(1)), release_id(judged(2))}) == 3
    changes = {c.path: (c.before, c.after) for c in diff_content(judged(1), judged(2))}
    assert changes == {"judges[reply-judge].version": (1, 2)}
    added = {c.path for c in diff_content(plain, judged(1))}
    assert "judges[reply-judge].version" in added
