"""verify_chain names the first bad entry for each kind of tampering."""

from __future__ import annotations

from releaser.core.audit import GENESIS_HASH, EventDraft, RawEvent, chain_hash, verify_chain


def _chain(n: int) -> list[RawEvent]:
    out, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        payload = EventDraft(actor="a", action="x", subject=f"s{seq}", at="t").payload()
        h = chain_hash(seq, prev, payload)
        out.append(RawEvent(seq, prev, h, payload))
        prev = h
    return out


def test_intact_chain_verifies_with_head() -> None:
    ev = _chain(5)
    res = verify_chain(ev, head=(5, ev[-1].hash))
    assert res.ok and res.count == 5 and res.head_hash == ev[-1].hash


def test_flipped_byte_names_the_entry() -> None:
    ev = _chain(5)
    ev[2] = ev[2]._replace(payload=ev[2].payload.replace('"s3"', '"s4"'))
    res = verify_chain(ev)
    assert not res.ok and res.bad_seq == 3


def test_deleted_entry_is_named() -> None:
    ev = _chain(5)
    del ev[1]
    res = verify_chain(ev)
    assert not res.ok and res.bad_seq == 2


def test_reordered_entries_are_caught() -> None:
    ev = _chain(5)
    a, b = ev[1], ev[2]
    ev[1] = b._replace(seq=2)
    ev[2] = a._replace(seq=3)
    res = verify_chain(ev)
    assert not res.ok and res.bad_seq == 2


def test_truncated_tail_is_caught_by_head() -> None:
    ev = _chain(5)
    res = verify_chain(ev[:4], head=(5, ev[-1].hash))
    assert not res.ok and res.bad_seq == 5
