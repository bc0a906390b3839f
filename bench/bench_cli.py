"""CLI wall times against `dvc --version`, on a workspace with a real MLflow model.

Side by side in one run (median and p90 of wall time, each a fresh process; the
measurements are interleaved, one of each per round, so they share the
machine's conditions):

- ``dvc --version``: the peer, a Python CLI of the same ecosystem;
- ``releaser --help`` and ``releaser --version``;
- ``rollback`` of a prompt-only service (file prompt backend) mid-rollout;
- ``rollback`` of the example service (a registered model in an MLflow sqlite
  registry, its prompt in MLflow's prompt registry) mid-rollout, at the 25% step
  (the store is put back to that step before each run);
- ``rollback`` of that service after promotion, which moves the model's
  ``production`` alias in MLflow (v2 -> v1): before each timed run the release
  is rolled forward again (started and promoted, which moves the alias to v2),
  and each run is checked to have moved it back;
- ``mlflow --help``, for scale.

Targets, as ratios of the medians to ``dvc --version``'s: ``--help`` <= 1x,
prompt-only rollback <= 2x, model rollback <= 4x.

The workspace is built as the demo builds it (the case-triage example: data
in DVC, two trained model versions registered in MLflow), which takes about a
minute. Run: .venv/bin/python bench/bench_cli.py [RUNS]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _rollback_setup as setup  # noqa: E402

BIN = Path(sys.executable).parent
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 11
SERVICE = "case-triage"
MODEL = "case-triage"

# name: (target ratio to dvc --version, or None)
TARGETS = {
    "releaser --help": 1.0,
    "rollback, prompt-only": 2.0,
    "rollback, model mid-rollout": 4.0,
    "rollback, model promoted": 4.0,
}


def wall(cmd: list[str], runs: int, *, cwd: Path | None = None) -> list[float]:
    """Wall times of ``runs`` runs of ``cmd`` (one warm-up run first)."""
    subprocess.run(cmd, capture_output=True, check=False, cwd=cwd)
    times = []
    for _ in range(runs):
        times.append(once(cmd, cwd=cwd)[0])
    return times


def once(cmd: list[str], *, cwd: Path | None = None) -> tuple[float, str]:
    """(wall time, stdout + stderr) of one run of ``cmd``; a failure stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=setup.child_env())
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[1:])} failed ({done.returncode}): {done.stderr}")
    return elapsed, done.stdout + done.stderr


def rollback_cmd(service: str) -> list[str]:
    """``releaser rollback SERVICE`` as operations type it."""
    return [str(BIN / "releaser"), "rollback", service, "--reason", "bench", "--yes"]


def model_workspace(root: Path) -> tuple[str, str]:
    """The example workspace: r1 (model v1) stable, r2 (model v2) gated; (r1, r2)."""
    from releaser.api.prompts import promote_prompt, register_prompt
    from releaser.api.workspace import open_workspace
    from releaser.config.template import render_init_template
    from releaser.demo.workspace import PROMPT_PATH, build_example_workspace

    example = build_example_workspace(
        root,
        config_text=render_init_template("council-casework", SERVICE),
        model_versions=2,
    )
    ws = open_workspace(example.root)
    try:
        pv = register_prompt(ws, example.root / PROMPT_PATH).version
        promote_prompt(ws, pv.name, pv.version, "production", "first version")
    finally:
        ws.close()

    def cli(*args: str) -> str:
        return setup.releaser(root, *args).stdout

    r1 = json.loads(cli("release", "create", SERVICE, "--json"))["release"]["id"]
    cli("gate", SERVICE, "--release", r1)
    cli("rollout", "start", SERVICE, "--release", r1, "--initial")
    config = root / "releaser.yaml"
    config.write_text(config.read_text().replace("alias: champion", "version: 2", 1))
    subprocess.run(["git", "commit", "-qam", "serve v2"], cwd=root, check=True)
    r2 = json.loads(cli("release", "create", SERVICE, "--json"))["release"]["id"]
    cli("gate", SERVICE, "--release", r2)
    return r1, r2


class ModelService:
    """The example service, reset before each timed rollback."""

    def __init__(self, root: Path) -> None:
        from releaser.api.rollouts import start_rollout
        from releaser.api.workspace import open_workspace
        from releaser.demo.traffic import advance_to_step

        self.root = root
        _r1, self.r2 = model_workspace(root)
        ws = open_workspace(root)
        try:
            start_rollout(ws, SERVICE, self.r2, now="2030-01-01T00:00:00.000000Z")
            advance_to_step(ws, SERVICE, "canary-25")
        finally:
            ws.close()
        # Mid-rollout: r1 stable (its model v1 holds the production alias), r2 at 25%.
        self.mid = root.parent / "model-mid.snap.db"
        setup.snapshot(root, self.mid)

    def to_mid_rollout(self) -> None:
        """Back to the 25% step (the store alone: MLflow already matches it)."""
        setup.restore(self.root, self.mid)

    def to_promoted(self) -> None:
        """Roll forward: from the mid-rollout state rolled back, start r2 again and promote
        it, which moves the model's production alias to v2."""
        from releaser.api.rollouts import promote_rollout, start_rollout
        from releaser.api.workspace import open_workspace

        ws = open_workspace(self.root)
        try:
            start_rollout(ws, SERVICE, self.r2, force=True, reason="bench: roll forward")
            promote_rollout(ws, SERVICE, reason="bench: roll forward")
            if ws.models.get_alias(MODEL, "production") != 2:
                sys.exit("rolling forward did not move the production alias to v2")
        finally:
            ws.close()


def rounds(prompt_root: Path, model: ModelService) -> dict[str, list[float]]:
    """Every measurement once per round, so they share the machine's conditions."""
    snap = prompt_root.parent / "prompt-only.snap.db"
    setup.snapshot(prompt_root, snap)
    times: dict[str, list[float]] = {}
    dvc = [str(BIN / "dvc"), "--version"]
    help_ = [str(BIN / "releaser"), "--help"]
    version = [str(BIN / "releaser"), "--version"]
    for i in range(RUNS + 1):  # round 0 warms the caches and is not counted
        measured: dict[str, float] = {}
        measured["dvc --version"] = once(dvc)[0]
        measured["releaser --help"] = once(help_)[0]
        measured["releaser --version"] = once(version)[0]

        setup.restore(prompt_root, snap)
        measured["rollback, prompt-only"], out = once(rollback_cmd(setup.SERVICE), cwd=prompt_root)
        if "traffic switched" not in out:
            sys.exit(out)

        model.to_mid_rollout()
        measured["rollback, model mid-rollout"], out = once(rollback_cmd(SERVICE), cwd=model.root)
        if "traffic switched" not in out:
            sys.exit(out)

        model.to_promoted()
        measured["rollback, model promoted"], out = once(rollback_cmd(SERVICE), cwd=model.root)
        if f"{MODEL}@production: done (v2 -> v1)" not in out:
            sys.exit(f"the rollback did not move the MLflow alias back:\n{out}")
        if i:
            for name, value in measured.items():
                times.setdefault(name, []).append(value)
    return times


def report(name: str, times: list[float], peer: float | None) -> None:
    """Print median and p90, the ratio to the peer's median and the target verdict."""
    med = statistics.median(times)
    p90 = sorted(times)[max(0, int(len(times) * 0.9) - 1)]
    line = f"{name:<30} median {med:6.3f} s  p90 {p90:6.3f} s  (n={len(times):>2})"
    if peer:
        line += f"  {med / peer:5.2f}x dvc"
        target = TARGETS.get(name)
        if target is not None:
            verdict = "PASS" if med <= target * peer else "FAIL"
            line += f"  target <= {target:g}x: {verdict}"
    print(line, flush=True)


def main() -> None:
    """Build the workspaces, time everything in rounds, print the comparison."""
    with tempfile.TemporaryDirectory(prefix="releaser-bench-cli-") as tmp:
        base = Path(tmp)
        prompt_root = base / "prompt-only"
        prompt_root.mkdir()
        print("building the workspaces (about a minute) ...", flush=True)
        setup.build(prompt_root)
        model = ModelService(base / "model")
        time.sleep(3)  # let what the build started in the background (DVC, git) finish
        times = rounds(prompt_root, model)
        times["mlflow --help"] = wall([str(BIN / "mlflow"), "--help"], 5)
    peer = statistics.median(times["dvc --version"])
    print(f"CLI wall time (seconds; each run a fresh process; {RUNS} interleaved rounds)")
    for name, values in times.items():
        report(name, values, None if name == "dvc --version" else peer)


if __name__ == "__main__":
    main()
