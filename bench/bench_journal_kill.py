"""Reliability: kill -9 every command that moves traffic or an alias; a plain re-run converges.

The workspace is the example service with a real MLflow model (versions 1 and
2) and its prompt (versions 1 and 2), release r1 stable and r2 rolled out over
it, with bake times and minimum samples set to 0. Five scenarios, each from a
snapshot of the store, the MLflow registry and the prompts:

- ``rollback-mid``: ``rollback`` while r2 is live at its first step;
- ``rollback-promoted``: ``rollback`` after r2 was promoted (both aliases move back);
- ``promote``: ``rollout promote --force`` while r2 is live (both aliases move);
- ``advance``: ``rollout advance --if-live`` at the last step, which promotes;
- ``prompt-promote``: ``prompt promote`` of version 1 onto the ``candidate`` alias.

Each trial restores its snapshot, starts the command and sends SIGKILL: for a
quarter of the trials at a uniform point before its first commit, for a
quarter normal around it (sd 15 ms; both timed from the start, the commit time
found in calibration runs), and for half after the commit is seen in the store
(the harness watches its change token), uniform over what the run has left:
the switch is in the store and the side effects are on their way. After each
kill a plain re-run of the same command must exit 0, and then:

- the MLflow model alias and the prompts' ``production`` aliases are where the
  store's stable release pins them (``prompt-promote``: the alias it moves is
  where the journal sent it, version 1);
- the journal owes nothing and reconcile's check finds no drift;
- every alias move in the audit log chains (each move starts where the one
  before it ended) and the last one ends where the alias is;
- ``audit verify`` passes.

Exits non-zero on the first violation. Run:
.venv/bin/python bench/bench_journal_kill.py [--backend sqlite|postgresql] [--runs N]
(default: sqlite, 200 kill points spread over the five scenarios). The
PostgreSQL backend uses $RELEASER_TEST_POSTGRES_DSN (a scratch schema, dropped
at the end) and the file prompt backend; sqlite uses the MLflow prompt registry.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _rollback_setup import sqlite_copy, sqlite_restore  # noqa: E402

BIN = Path(sys.executable).parent / "releaser"
SERVICE = "case-triage"
PROMPT = "case-triage-system"
SEED = 20261204
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Scenario:
    """A command to kill, the snapshot it starts from, and the stable release it leaves."""

    name: str
    snapshot: str
    command: list[str]
    stable_after: str  # "r1" or "r2"


SCENARIOS = [
    Scenario("rollback-mid", "live", ["rollback", SERVICE, "--reason", "kill test", "--yes"], "r1"),
    Scenario(
        "rollback-promoted",
        "promoted",
        ["rollback", SERVICE, "--reason", "kill test", "--yes"],
        "r1",
    ),
    Scenario(
        "promote", "live", ["rollout", "promote", SERVICE, "--force", "--reason", "kill"], "r2"
    ),
    Scenario("advance", "last-step", ["rollout", "advance", SERVICE, "--if-live"], "r2"),
    Scenario(
        "prompt-promote",
        "live",
        ["prompt", "promote", PROMPT, "1", "--to", "candidate", "--reason", "kill test"],
        "r1",
    ),
]


class Backend:
    """Where the store lives, and how to copy it aside and put it back."""

    name = ""

    def env(self) -> dict[str, str]:
        """Variables the CLI needs to find this store."""
        return {}

    def snapshot(self, label: str) -> None:
        """Copy the store aside under ``label``."""
        raise NotImplementedError

    def restore(self, label: str) -> None:
        """Put the copy ``label`` back as the store."""
        raise NotImplementedError

    def close(self) -> None:
        """Drop what the backend made."""


class SqliteBackend(Backend):
    """The workspace's own .releaser/state.db."""

    name = "sqlite"

    def __init__(self, root: Path, spare: Path) -> None:
        self.db = root / ".releaser" / "state.db"
        self.spare = spare

    def snapshot(self, label: str) -> None:
        """sqlite's backup API: a consistent copy, WAL included."""
        sqlite_copy(self.db, self.spare / f"store-{label}.db")

    def restore(self, label: str) -> None:
        """Copy the file back over the store, dropping any WAL of the last run."""
        sqlite_restore(self.spare / f"store-{label}.db", self.db)


class PostgresBackend(Backend):
    """A scratch schema in the test database; snapshots are copies of its tables."""

    name = "postgresql"

    def __init__(self, dsn: str, schema: str | None = None) -> None:
        import psycopg

        self.schema = schema or f"killtest_{uuid.uuid4().hex[:8]}"
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.owner = schema is None
        if self.owner:
            self.conn.execute(f"CREATE SCHEMA {self.schema}")
        sep = "&" if "?" in dsn else "?"
        self.dsn = dsn
        self.url = f"{dsn}{sep}options=-csearch_path%3D{self.schema}"

    @classmethod
    def of(cls, url: str) -> PostgresBackend:
        """The backend another process made, from its store URL (it stays the owner)."""
        dsn, _, schema = url.rpartition("options=-csearch_path%3D")
        return cls(dsn.rstrip("?&"), schema)

    def env(self) -> dict[str, str]:
        """The store URL, with the scratch schema as its search_path."""
        return {"RELEASER_STORE": self.url}

    def _tables(self, schema: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "ORDER BY table_name",
            (schema,),
        ).fetchall()
        return [r[0] for r in rows]

    def snapshot(self, label: str) -> None:
        """Copy every table of the schema into a schema of its own."""
        copy = f"{self.schema}_{label.replace('-', '_')}"
        self.conn.execute(f"DROP SCHEMA IF EXISTS {copy} CASCADE")
        self.conn.execute(f"CREATE SCHEMA {copy}")
        for table in self._tables(self.schema):
            self.conn.execute(f"CREATE TABLE {copy}.{table} AS TABLE {self.schema}.{table}")

    def restore(self, label: str) -> None:
        """Empty the store's tables and refill them from the copy, in one transaction."""
        copy = f"{self.schema}_{label.replace('-', '_')}"
        tables = self._tables(self.schema)
        with self.conn.transaction():
            # A restore from backup, as the table's owner: the append-only triggers are
            # set aside for this transaction only.
            self.conn.execute(f"ALTER TABLE {self.schema}.audit_events DISABLE TRIGGER USER")
            names = ", ".join(f"{self.schema}.{t}" for t in tables)
            self.conn.execute(f"TRUNCATE {names}")
            for table in tables:
                self.conn.execute(f"INSERT INTO {self.schema}.{table} SELECT * FROM {copy}.{table}")
            self.conn.execute(f"ALTER TABLE {self.schema}.audit_events ENABLE TRIGGER USER")

    def close(self) -> None:
        """Drop the scratch schema and its copies (when this process made them)."""
        if not self.owner:
            self.conn.close()
            return
        rows = self.conn.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s",
            (f"{self.schema}%",),
        ).fetchall()
        for (schema,) in rows:
            self.conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        self.conn.close()


class Workspace:
    """The example workspace and its outside world (MLflow registry, prompt files)."""

    def __init__(self, root: Path, backend: Backend, spare: Path) -> None:
        self.root = root
        self.backend = backend
        self.spare = spare

    def env(self) -> dict[str, str]:
        """The CLI's environment: a fixed actor, no colour, the store."""
        return {**os.environ, "NO_COLOR": "1", "RELEASER_ACTOR": "kill-test", **self.backend.env()}

    def snapshot(self, label: str) -> None:
        """Store, MLflow registry and prompt files, copied aside."""
        self.backend.snapshot(label)
        sqlite_copy(self.root / "mlflow.db", self.spare / f"mlflow-{label}.db")
        shutil.copytree(self.root / "prompts", self.spare / f"prompts-{label}", dirs_exist_ok=True)

    def restore(self, label: str) -> None:
        """Put all three back as they were at ``label``."""
        self.backend.restore(label)
        sqlite_restore(self.spare / f"mlflow-{label}.db", self.root / "mlflow.db")
        shutil.rmtree(self.root / "prompts")
        shutil.copytree(self.spare / f"prompts-{label}", self.root / "prompts")

    def run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        """The CLI, to completion."""
        return subprocess.run(
            [str(BIN), *args], cwd=self.root, env=self.env(), capture_output=True, text=True
        )

    def start(self, args: list[str]) -> subprocess.Popen[bytes]:
        """The CLI, in the background."""
        return subprocess.Popen(
            [str(BIN), *args],
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def open(self) -> Any:
        """The releaser workspace, on this store."""
        from releaser.api.workspace import open_workspace

        return open_workspace(self.root, store_url=self.backend.env().get("RELEASER_STORE"))


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def _fast(config: str, backend_name: str) -> str:
    """The init template's config with bakes and minimum samples at 0."""
    for n in ("60", "120", "240"):
        config = config.replace(f"bake_minutes: {n}", "bake_minutes: 0")
    for n in ("100", "300", "1000"):
        config = config.replace(f"min_samples: {n}", "min_samples: 0")
    if backend_name == "postgresql":
        config = config.replace("  backend: mlflow\n", "  backend: file\n", 1)
    return config


def build(root: Path, backend_name: str, example: Path | None) -> None:
    """The example workspace (built, or copied from ``example``), bakes and samples at 0."""
    from releaser.config.template import render_init_template
    from releaser.demo.workspace import build_example_workspace

    if example is None:
        config = render_init_template("council-casework", SERVICE)
        build_example_workspace(root, config_text=_fast(config, backend_name), model_versions=2)
        return
    shutil.copytree(example, root, symlinks=True)
    cfg = root / "releaser.yaml"
    cfg.write_text(_fast(cfg.read_text(), backend_name))
    _git(root, "commit", "-qam", "bakes and samples at 0")


def setup(ws: Workspace) -> None:
    """Releases r1 (model v1, prompt v1) stable and r2 (model v2, prompt v2); snapshots."""
    from releaser.api.prompts import promote_prompt, register_prompt
    from releaser.api.rollouts import promote_rollout
    from releaser.demo.traffic import advance_to_step
    from releaser.demo.workspace import PROMPT_PATH

    root = ws.root
    w = ws.open()
    try:
        v1 = register_prompt(w, root / PROMPT_PATH).version
        promote_prompt(w, v1.name, v1.version, "production", "first version")
    finally:
        w.close()
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "prompt v1", "--allow-empty")
    r1 = _create(ws)
    _must(ws.run(["gate", SERVICE, "--release", r1]))
    _must(ws.run(["rollout", "start", SERVICE, "--release", r1, "--initial"]))
    spec = root / PROMPT_PATH
    spec.write_text(spec.read_text().replace("template: |\n", "template: |\n  Be brief.\n", 1))
    w = ws.open()
    try:
        v2 = register_prompt(w, spec).version
        assert v2.version == 2, v2
        promote_prompt(w, v2.name, v2.version, "candidate", "for r2")
    finally:
        w.close()
    cfg = root / "releaser.yaml"
    text = cfg.read_text().replace("alias: champion", "version: 2", 1)
    text = text.replace(
        f"      - {PROMPT}\n", f"      - name: {PROMPT}\n        alias: candidate\n"
    )
    cfg.write_text(text)
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "r2: model v2, prompt v2")
    r2 = _create(ws)
    _must(ws.run(["gate", SERVICE, "--release", r2]))
    _must(ws.run(["rollout", "start", SERVICE, "--release", r2]))
    ws.snapshot("live")
    w = ws.open()
    try:
        advance_to_step(w, SERVICE, "full")
    finally:
        w.close()
    ws.snapshot("last-step")
    w = ws.open()
    try:
        promote_rollout(w, SERVICE, reason="promoted for the kill test")
    finally:
        w.close()
    ws.snapshot("promoted")


def _create(ws: Workspace) -> str:
    import json

    done = _must(ws.run(["release", "create", SERVICE, "--json"]))
    return str(json.loads(done.stdout)["release"]["id"])


def _must(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    if done.returncode != 0:
        sys.exit(f"releaser {' '.join(done.args[1:])} failed ({done.returncode}): {done.stderr}")
    return done


def calibrate(ws: Workspace, sc: Scenario, runs: int = 3) -> tuple[float, float]:
    """(median time to the first commit, median wall time) of uninterrupted runs."""
    firsts, walls = [], []
    for _ in range(runs):
        ws.restore(sc.snapshot)
        w = ws.open()
        try:
            token = w.store.change_token()
            t0 = time.monotonic()
            proc = ws.start(sc.command)
            first = None
            while proc.poll() is None:
                if first is None and w.store.change_token() != token:
                    first = time.monotonic() - t0
                time.sleep(0.0005)
            walls.append(time.monotonic() - t0)
        finally:
            w.close()
        if proc.returncode != 0:
            sys.exit(f"{sc.name}: an uninterrupted run exited {proc.returncode}")
        if first is None:
            sys.exit(f"{sc.name}: an uninterrupted run committed nothing")
        firsts.append(first)
        problem = check(ws, sc)
        if problem:
            sys.exit(f"{sc.name}: an uninterrupted run left: {problem}")
    return statistics.median(firsts), statistics.median(walls)


def _chain(events: list[Any], actual: int | None, what: str) -> str | None:
    """None when the moves chain from one to the next and end at ``actual``."""
    last: Any = "start"
    for ev in events:
        before, after = ev.before.get("version"), ev.after.get("version")
        if last != "start" and before != last:
            return f"{what}: move #{ev.seq} starts at {before}, the one before ended at {last}"
        last = after
    if last != "start" and last != actual:
        return f"{what}: the last recorded move ends at {last}, the alias is at {actual}"
    return None


def aliases(ws: Workspace) -> dict[tuple[str, str], int]:
    """Every model and prompt alias as the outside world has it, read afresh.

    Read with plain sqlite (and the prompt files) on a new connection each time:
    this process must hold nothing open in mlflow.db while snapshots are restored.
    """
    con = sqlite3.connect(ws.root / "mlflow.db")
    try:
        rows = con.execute("SELECT name, alias, version FROM registered_model_aliases").fetchall()
    finally:
        con.close()
    found = {(str(n), str(a)): int(v) for n, a, v in rows}
    if isinstance(ws.backend, PostgresBackend):  # the file prompt backend
        from promptregistry import FilePromptBackend

        files = FilePromptBackend(ws.root, folder="prompts")
        found.update({(PROMPT, a): v for a, v in files.aliases(PROMPT).items()})
    return found


def check(ws: Workspace, sc: Scenario) -> str | None:
    """What is wrong after a run (None: the outside world matches the store)."""
    from releaser.api import journal
    from releaser.api.audit import verify_audit
    from releaser.api.releases import get_release
    from releaser.api.rollouts import service_state

    at = aliases(ws)
    w = ws.open()
    try:
        verdict = verify_audit(w)
        if not verdict.ok:
            return f"audit verify failed: {verdict}"
        owed = [r.key for r in journal.owed(w, service=SERVICE)]
        owed += [r.key for r in journal.owed(w, keys=[journal.prompt_key(PROMPT, "candidate")])]
        if owed:
            return f"still owed: {owed}"
        state = service_state(w, SERVICE)
        stable = get_release(w, state.stable or "")
        if state.active_rollout is not None and sc.name != "prompt-promote":
            return f"rollout {state.active_rollout} is still live"
        want = 2 if sc.stable_after == "r2" else 1
        m = stable.content.model
        assert m is not None
        if m.version != want:
            return f"the stable release serves model v{m.version}, expected v{want}"
        model_at = at.get((m.name, "production"))
        if model_at != m.version:
            return (
                f"MLflow {m.name}@production is v{model_at}, the stable release pins v{m.version}"
            )
        for p in stable.content.prompts:
            if at.get((p.name, "production")) != p.version:
                return (
                    f"{p.name}@production is {at.get((p.name, 'production'))}, pinned v{p.version}"
                )
        if sc.name == "prompt-promote" and at.get((PROMPT, "candidate")) != 1:
            return (
                f"{PROMPT}@candidate is {at.get((PROMPT, 'candidate'))}, the command moved it to 1"
            )
        events = [e for e in w.store.events(subject=f"model:{m.name}") if e.action == "model.alias"]
        problem = _chain(events, model_at, "model moves")
        if problem:
            return problem
        prompt_events = [
            e for e in w.store.events(subject=f"prompt:{PROMPT}") if e.action == "prompt.alias"
        ]
        for alias in ("production", "candidate"):
            moves = [e for e in prompt_events if e.after.get("alias") == alias]
            problem = _chain(moves, at.get((PROMPT, alias)), f"prompt {alias} moves")
            if problem:
                return problem
    finally:
        w.close()
    check_cli = ws.run(["reconcile", SERVICE, "--check"])
    if check_cli.returncode != 0:
        return f"reconcile --check exited {check_cli.returncode}: {check_cli.stderr.strip()}"
    return None


def plan(rng: random.Random, n: int, first: float, wall: float) -> list[tuple[str, float]]:
    """(when, delay) for ``n`` kills: a quarter at a uniform point before the first commit
    (timed from the start), a quarter normal around it (sd 15 ms, from the start), and
    half after the commit is seen in the store, uniform over what the run has left."""
    out: list[tuple[str, float]] = []
    for i in range(n):  # a single kill lands after the commit, where the journal matters
        if i % 4 == 1:
            out.append(("start", rng.uniform(0, first)))
        elif i % 4 == 3:
            out.append(("start", max(0.0, rng.gauss(first, 0.015))))
        else:
            out.append(("commit", rng.uniform(0, max(0.05, wall - first))))
    return out


def trial(ws: Workspace, sc: Scenario, when: str, delay: float) -> tuple[str, str]:
    """Kill one run; re-run; check. Returns (where the kill landed, violation or '').

    The kill lands ``before-commit``, ``after-commit`` (the store changed, the
    process had not finished) or the run had ``finished``.
    """
    ws.restore(sc.snapshot)
    w = ws.open()
    try:
        token = w.store.change_token()
        proc = ws.start(sc.command)
        t0 = time.monotonic()
        if when == "commit":
            while proc.poll() is None and w.store.change_token() == token:
                if time.monotonic() - t0 > 120:
                    break
                time.sleep(0.0005)
            time.sleep(delay)
        else:
            time.sleep(max(0.0, t0 + delay - time.monotonic()))
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        committed = w.store.change_token() != token
    finally:
        w.close()
    landed = "finished" if not alive else ("after-commit" if committed else "before-commit")
    again = ws.run(sc.command)
    if again.returncode != 0:
        return landed, f"the re-run exited {again.returncode}: {again.stderr.strip()[-400:]}"
    return landed, check(ws, sc) or ""


def main(argv: list[str] | None = None) -> None:
    """Calibrate each scenario, kill at RUNS points, check every invariant after each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--runs", type=int, default=200, help="kill points in all")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--calibrate", type=int, default=3, help="uninterrupted runs each")
    parser.add_argument(
        "--example", type=Path, help="copy this example workspace (2 model versions) to start"
    )
    parser.add_argument("--setup", nargs=3, metavar=("ROOT", "SPARE", "STORE"), help="internal")
    args = parser.parse_args(argv)
    if args.setup:
        # In a child process: MLflow keeps mlflow.db open for the life of a process, and
        # the parent replaces that file between trials.
        root, spare, store = (Path(args.setup[0]), Path(args.setup[1]), args.setup[2])
        build(root, args.backend, args.example)
        child: Backend = SqliteBackend(root, spare) if store == "-" else PostgresBackend.of(store)
        setup(Workspace(root, child, spare))
        return
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only.split(",")]
    rng = random.Random(SEED)
    os.environ.setdefault("GIT_AUTHOR_NAME", "kill-test")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "kill-test@example.org")
    os.environ.setdefault("GIT_COMMITTER_NAME", "kill-test")
    os.environ.setdefault("GIT_COMMITTER_EMAIL", "kill-test@example.org")
    with tempfile.TemporaryDirectory() as tmp:
        root, spare = Path(tmp) / "ws", Path(tmp) / "spare"
        spare.mkdir()
        backend: Backend
        if args.backend == "postgresql":
            backend = PostgresBackend(os.environ.get("RELEASER_TEST_POSTGRES_DSN") or DEFAULT_DSN)
        else:
            backend = SqliteBackend(root, spare)
        try:
            t0 = time.monotonic()
            store = backend.env().get("RELEASER_STORE", "-")
            made = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--backend",
                    args.backend,
                    "--setup",
                    str(root),
                    str(spare),
                    store,
                ]
            )
            if made.returncode != 0:
                sys.exit(f"setting up the workspace failed ({made.returncode})")
            ws = Workspace(root, backend, spare)
            print(f"{args.backend}: workspace and snapshots ready in {time.monotonic() - t0:.0f} s")
            totals: Counter[str] = Counter()
            per = [args.runs // len(scenarios)] * len(scenarios)
            for i in range(args.runs - sum(per)):
                per[i] += 1
            for sc, n in zip(scenarios, per, strict=True):
                first, wall = calibrate(ws, sc, args.calibrate)
                landed: Counter[str] = Counter()
                for when, delay in plan(rng, n, first, wall):
                    where, problem = trial(ws, sc, when, delay)
                    landed[where] += 1
                    if problem:
                        sys.exit(
                            f"FAIL {args.backend} {sc.name}, kill {delay * 1000:.0f} ms after "
                            f"the {when} ({where}): {problem}"
                        )
                totals["runs"] += n
                totals.update(landed)
                print(
                    f"{args.backend} {sc.name}: {n} kill points (first commit at "
                    f"{first * 1000:.0f} ms, run {wall * 1000:.0f} ms); killed before the commit "
                    f"{landed['before-commit']}, after it {landed['after-commit']}, run finished "
                    f"first {landed['finished']}; every re-run converged",
                    flush=True,
                )
            print(
                f"{args.backend}: kill -9 at {totals['runs']} random points (seed {SEED}): "
                f"{totals['before-commit']} before the commit, {totals['after-commit']} between "
                f"the commit and the end, {totals['finished']} after the end; after each, a plain "
                "re-run left the "
                "MLflow and prompt aliases where the store says, nothing owed, every move "
                "chained in the audit log, audit verify ok, reconcile --check clean: PASS"
            )
        finally:
            backend.close()


if __name__ == "__main__":
    main()
