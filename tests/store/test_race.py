"""Eight processes race to advance the same record: exactly one wins, on every backend."""

from __future__ import annotations

import pytest

from releaser.core.audit import verify_chain
from releaser.store.base import Store

from . import _workers
from .conftest import Backend, insert

WORKERS = 8


@pytest.mark.slow
def test_exactly_one_of_eight_processes_wins(store: Store, backend: Backend) -> None:
    insert(store, _workers.RACE_KIND, _workers.RACE_KEY, {"winner": None})
    head_before = store.audit_head()

    outcomes = _workers.run_processes(_workers.race_commit, backend.url, WORKERS)

    errors = [o for o in outcomes if o[1] == "error"]
    assert errors == []
    winners = [index for index, status, _ in outcomes if status == "ok"]
    conflicts = [message for _, status, message in outcomes if status == "conflict"]
    assert len(winners) == 1
    assert len(conflicts) == WORKERS - 1
    assert all("expected version 1, found version 2" in m for m in conflicts)

    record = store.get(_workers.RACE_KIND, _workers.RACE_KEY)
    assert record is not None
    assert (record.version, record.value) == (2, {"winner": winners[0]})

    result = verify_chain(store.raw_events(), head=store.audit_head())
    assert result.ok, result.problem
    assert result.count == head_before[0] + 1
    new_events = list(store.events(after_seq=head_before[0]))
    assert [e.actor for e in new_events] == [f"worker-{winners[0]}"]
    assert new_events[0].prev_hash == head_before[1]
