"""The schema of the SQL stores: versioned migrations per backend.

Each backend applies its migrations in order when a store is opened, inside
one locked transaction, and records each applied version in
``schema_version``. A store whose schema is newer than this releaser knows is
refused rather than written to.

Tables (both backends):

- ``records(kind, key, version, value, updated_at)``: current state, CAS on ``version``.
- ``audit_events(seq, prev_hash, hash, payload, subject)``: the hash chain;
  ``payload`` is the exact hashed text, ``subject`` a copy for filtering.
- ``audit_head(id = 1, seq, hash)``: the latest event; its row lock serialises writers.
- ``schema_version(version, description, applied_at)``.
- ``rollout_metrics(rollout_id, step, variant, requests, errors, slow, slow_threshold_ms,
  quality_count, quality_sum, quality_sumsq, updated_at)`` (v2): cumulative aggregates,
  merged by additive upserts.
- ``rollout_latency_bins(rollout_id, step, variant, bin, count)`` (v2): the latency
  histogram, one row per non-empty bin, merged the same way.
- v4: triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) of
  ``audit_events``; the chain only grows. Someone who can drop a trigger can still
  edit it, which ``audit verify`` with checkpoints detects.
- v5: ``records.event_seq``, the audit entry that last wrote the record; that entry's
  payload lists each record it wrote with its new version and value digest, so an edit
  of state alone is detected. Records older than v5 are vouched for by one
  ``store.anchor`` entry written by the migration. On PostgreSQL ``records.value``
  becomes ``json`` (the text as written) instead of ``jsonb``.
- v6: ``rollout_metrics`` gains ``token_requests``, ``prompt_tokens``,
  ``completion_tokens`` (sums), ``tokens_sumsq``, ``prompt_tokens_sumsq`` and
  ``completion_tokens_sumsq`` (sums of squares per request), all 0 for rows written
  before; ``rollout_token_bins(rollout_id, step, variant, bin, count)`` holds the
  histogram of total tokens per request (the latency layout), one row per non-empty bin,
  merged like the latency bins.
- v7: ``rollout_unit_sketches(rollout_id, step, variant, cohort_group, requests,
  registers, updated_at)``: distinct units per rollout step, variant and cohort group as
  a HyperLogLog sketch (``releaser.core.unit_sketch``; ``registers`` is its text form,
  never a unit id), merged register-wise with ``max`` in the metric batch's transaction;
  ``requests`` counts the requests recorded with a unit id.
- ``metric_batches(batch_id, applied_at)`` (v3): ids of metric batches already added
  (unix seconds, database clock), so a router re-sending a batch whose commit it never
  saw confirmed does not count it twice; kept for ``BATCH_ID_RETENTION_S``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from releaser.core.audit import GENESIS_HASH
from releaser.errors import ReleaserError

__all__ = [
    "POSTGRES_MIGRATIONS",
    "SQLITE_MIGRATIONS",
    "Migration",
    "pending_migrations",
]


@dataclass(frozen=True)
class Migration:
    """One schema step: its version number and the statements that make it."""

    version: int
    description: str
    statements: tuple[str, ...]
    anchor_records: bool = False
    """After the statements, link every record that names no audit entry to a new
    ``store.anchor`` entry (see ``releaser.store._writes.anchor_existing_records``)."""


SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "records, audit chain and head",
        (
            """CREATE TABLE records (
                kind TEXT NOT NULL,
                key TEXT NOT NULL,
                version INTEGER NOT NULL CHECK (version > 0),
                value TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (kind, key)
            ) WITHOUT ROWID""",
            """CREATE TABLE audit_events (
                seq INTEGER PRIMARY KEY,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL,
                payload TEXT NOT NULL,
                subject TEXT NOT NULL
            )""",
            "CREATE INDEX audit_events_subject ON audit_events (subject, seq)",
            """CREATE TABLE audit_head (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                seq INTEGER NOT NULL,
                hash TEXT NOT NULL
            )""",
            f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}')",
        ),
    ),
    Migration(
        2,
        "rollout metrics: per-variant aggregates and latency bins",
        (
            """CREATE TABLE rollout_metrics (
                rollout_id TEXT NOT NULL,
                step INTEGER NOT NULL CHECK (step >= 0),
                variant TEXT NOT NULL CHECK (variant IN ('baseline', 'candidate')),
                requests INTEGER NOT NULL CHECK (requests >= 0),
                errors INTEGER NOT NULL CHECK (errors >= 0),
                slow INTEGER NOT NULL CHECK (slow >= 0),
                slow_threshold_ms REAL CHECK (slow_threshold_ms > 0),
                quality_count INTEGER NOT NULL CHECK (quality_count >= 0),
                quality_sum REAL NOT NULL CHECK (quality_sum >= 0),
                quality_sumsq REAL NOT NULL CHECK (quality_sumsq >= 0),
                updated_at TEXT NOT NULL,
                PRIMARY KEY (rollout_id, step, variant)
            ) WITHOUT ROWID""",
            """CREATE TABLE rollout_latency_bins (
                rollout_id TEXT NOT NULL,
                step INTEGER NOT NULL,
                variant TEXT NOT NULL,
                bin INTEGER NOT NULL CHECK (bin >= 0),
                count INTEGER NOT NULL CHECK (count >= 0),
                PRIMARY KEY (rollout_id, step, variant, bin)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        3,
        "metric batch ids: a re-sent batch is added once",
        (
            """CREATE TABLE metric_batches (
                batch_id TEXT NOT NULL PRIMARY KEY,
                applied_at INTEGER NOT NULL
            ) WITHOUT ROWID""",
            "CREATE INDEX metric_batches_applied ON metric_batches (applied_at)",
        ),
    ),
    Migration(
        4,
        "audit events are append-only: UPDATE and DELETE are refused",
        (
            """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
            BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
            """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
            BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
        ),
    ),
    Migration(
        5,
        "each record names the audit entry that last wrote it",
        ("ALTER TABLE records ADD COLUMN event_seq INTEGER",),
        anchor_records=True,
    ),
    Migration(
        6,
        "rollout metrics: token sums per variant and a histogram of tokens per request",
        (
            "ALTER TABLE rollout_metrics ADD COLUMN token_requests INTEGER NOT NULL "
            "DEFAULT 0 CHECK (token_requests >= 0)",
            "ALTER TABLE rollout_metrics ADD COLUMN prompt_tokens INTEGER NOT NULL "
            "DEFAULT 0 CHECK (prompt_tokens >= 0)",
            "ALTER TABLE rollout_metrics ADD COLUMN completion_tokens INTEGER NOT NULL "
            "DEFAULT 0 CHECK (completion_tokens >= 0)",
            "ALTER TABLE rollout_metrics ADD COLUMN tokens_sumsq REAL NOT NULL "
            "DEFAULT 0 CHECK (tokens_sumsq >= 0)",
            "ALTER TABLE rollout_metrics ADD COLUMN prompt_tokens_sumsq REAL NOT NULL "
            "DEFAULT 0 CHECK (prompt_tokens_sumsq >= 0)",
            "ALTER TABLE rollout_metrics ADD COLUMN completion_tokens_sumsq REAL NOT NULL "
            "DEFAULT 0 CHECK (completion_tokens_sumsq >= 0)",
            """CREATE TABLE rollout_token_bins (
                rollout_id TEXT NOT NULL,
                step INTEGER NOT NULL,
                variant TEXT NOT NULL,
                bin INTEGER NOT NULL CHECK (bin >= 0),
                count INTEGER NOT NULL CHECK (count >= 0),
                PRIMARY KEY (rollout_id, step, variant, bin)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        7,
        "distinct units: a HyperLogLog sketch per rollout step, variant and cohort group",
        (
            """CREATE TABLE rollout_unit_sketches (
                rollout_id TEXT NOT NULL,
                step INTEGER NOT NULL CHECK (step >= 0),
                variant TEXT NOT NULL CHECK (variant IN ('baseline', 'candidate')),
                cohort_group TEXT NOT NULL,
                requests INTEGER NOT NULL CHECK (requests >= 0),
                registers TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (rollout_id, step, variant, cohort_group)
            ) WITHOUT ROWID""",
        ),
    ),
)

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "records, audit chain and head",
        (
            # COLLATE "C": byte order, so keys sort as they do in sqlite whatever the locale.
            """CREATE TABLE records (
                kind TEXT COLLATE "C" NOT NULL,
                key TEXT COLLATE "C" NOT NULL,
                version BIGINT NOT NULL CHECK (version > 0),
                value JSONB NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (kind, key)
            )""",
            # payload is TEXT, not JSONB: the exact hashed bytes must come back.
            """CREATE TABLE audit_events (
                seq BIGINT PRIMARY KEY,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL,
                payload TEXT NOT NULL,
                subject TEXT NOT NULL
            )""",
            "CREATE INDEX audit_events_subject ON audit_events (subject, seq)",
            """CREATE TABLE audit_head (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                seq BIGINT NOT NULL,
                hash TEXT NOT NULL
            )""",
            f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}')",
        ),
    ),
    Migration(
        2,
        "rollout metrics: per-variant aggregates and latency bins",
        (
            # DOUBLE PRECISION, not REAL (float4): thresholds must compare equal to what
            # routers send, and sums must not lose precision as they grow.
            """CREATE TABLE rollout_metrics (
                rollout_id TEXT COLLATE "C" NOT NULL,
                step INTEGER NOT NULL CHECK (step >= 0),
                variant TEXT COLLATE "C" NOT NULL CHECK (variant IN ('baseline', 'candidate')),
                requests BIGINT NOT NULL CHECK (requests >= 0),
                errors BIGINT NOT NULL CHECK (errors >= 0),
                slow BIGINT NOT NULL CHECK (slow >= 0),
                slow_threshold_ms DOUBLE PRECISION CHECK (slow_threshold_ms > 0),
                quality_count BIGINT NOT NULL CHECK (quality_count >= 0),
                quality_sum DOUBLE PRECISION NOT NULL CHECK (quality_sum >= 0),
                quality_sumsq DOUBLE PRECISION NOT NULL CHECK (quality_sumsq >= 0),
                updated_at TEXT NOT NULL,
                PRIMARY KEY (rollout_id, step, variant)
            )""",
            """CREATE TABLE rollout_latency_bins (
                rollout_id TEXT COLLATE "C" NOT NULL,
                step INTEGER NOT NULL,
                variant TEXT COLLATE "C" NOT NULL,
                bin INTEGER NOT NULL CHECK (bin >= 0),
                count BIGINT NOT NULL CHECK (count >= 0),
                PRIMARY KEY (rollout_id, step, variant, bin)
            )""",
        ),
    ),
    Migration(
        3,
        "metric batch ids: a re-sent batch is added once",
        (
            """CREATE TABLE metric_batches (
                batch_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
                applied_at BIGINT NOT NULL
            )""",
            "CREATE INDEX metric_batches_applied ON metric_batches (applied_at)",
        ),
    ),
    Migration(
        4,
        "audit events are append-only: UPDATE, DELETE and TRUNCATE are refused",
        (
            """CREATE FUNCTION releaser_audit_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$""",
            """CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
            FOR EACH ROW EXECUTE FUNCTION releaser_audit_append_only()""",
            """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
            FOR EACH STATEMENT EXECUTE FUNCTION releaser_audit_append_only()""",
        ),
    ),
    Migration(
        5,
        "each record names the audit entry that last wrote it; values kept as written (json)",
        (
            "ALTER TABLE records ADD COLUMN event_seq BIGINT",
            # jsonb prints numbers without an exponent, so 7.2e+246 came back as a 247-digit
            # int and 1e16 as an int; json keeps the text releaser wrote, every double exact.
            "ALTER TABLE records ALTER COLUMN value TYPE json USING value::text::json",
        ),
        anchor_records=True,
    ),
    Migration(
        6,
        "rollout metrics: token sums per variant and a histogram of tokens per request",
        (
            """ALTER TABLE rollout_metrics
                ADD COLUMN token_requests BIGINT NOT NULL DEFAULT 0
                    CHECK (token_requests >= 0),
                ADD COLUMN prompt_tokens BIGINT NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
                ADD COLUMN completion_tokens BIGINT NOT NULL DEFAULT 0
                    CHECK (completion_tokens >= 0),
                ADD COLUMN tokens_sumsq DOUBLE PRECISION NOT NULL DEFAULT 0
                    CHECK (tokens_sumsq >= 0),
                ADD COLUMN prompt_tokens_sumsq DOUBLE PRECISION NOT NULL DEFAULT 0
                    CHECK (prompt_tokens_sumsq >= 0),
                ADD COLUMN completion_tokens_sumsq DOUBLE PRECISION NOT NULL DEFAULT 0
                    CHECK (completion_tokens_sumsq >= 0)""",
            """CREATE TABLE rollout_token_bins (
                rollout_id TEXT COLLATE "C" NOT NULL,
                step INTEGER NOT NULL,
                variant TEXT COLLATE "C" NOT NULL,
                bin INTEGER NOT NULL CHECK (bin >= 0),
                count BIGINT NOT NULL CHECK (count >= 0),
                PRIMARY KEY (rollout_id, step, variant, bin)
            )""",
        ),
    ),
    Migration(
        7,
        "distinct units: a HyperLogLog sketch per rollout step, variant and cohort group",
        (
            """CREATE TABLE rollout_unit_sketches (
                rollout_id TEXT COLLATE "C" NOT NULL,
                step INTEGER NOT NULL CHECK (step >= 0),
                variant TEXT COLLATE "C" NOT NULL CHECK (variant IN ('baseline', 'candidate')),
                cohort_group TEXT COLLATE "C" NOT NULL,
                requests BIGINT NOT NULL CHECK (requests >= 0),
                registers TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (rollout_id, step, variant, cohort_group)
            )""",
        ),
    ),
)


def pending_migrations(
    migrations: Sequence[Migration], current: int, *, url: str
) -> list[Migration]:
    """The migrations still to apply to a store at schema ``current``, in order.

    Raises :class:`ReleaserError` when the store was written by a newer
    releaser (its schema version is above every version known here).
    """
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3, ... in order; got {versions}")
    latest = versions[-1] if versions else 0
    if current > latest:
        raise ReleaserError(
            f"the state store at {url} has schema version {current}, "
            f"but this releaser knows versions up to {latest}",
            hint="a newer releaser has used this store; upgrade releaser "
            "(pip install --upgrade releaser) and run the command again",
        )
    return [m for m in migrations if m.version > current]
