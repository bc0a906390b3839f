"""The prompt chapter of the demo: an LLM service whose prompt changes are gated and canaried.

The ``reply-drafter`` example (``examples/reply_drafter``) joins the demo workspace:
its golden set tracked with DVC, its prompt versions and judge prompt in the prompt
registry, and a service block in ``releaser.yaml`` whose eval gate calls an
OpenAI-compatible endpoint (the local stand-in, :mod:`releaser.demo.llm_stub`, since
no LLM can be reached here). Version 1 is released first; then each new version goes
through ``releaser prompt release``: v2, which the judge scores worse on council-tax
letters, is refused at the gate naming that slice; v3 passes and is canaried to staff,
then 25% of residents. Library code: it reports through ``report``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from releaser.api.prompt_release import PromptRelease

__all__ = ["GOLDEN", "SERVICE", "ReplyStory", "add_reply_service", "run_reply_story"]

Report = Callable[[str], None]
SERVICE = "reply-drafter"
GOLDEN = "data/replies-golden.csv"
PROMPTS = "prompts/reply-drafter"
KEY_ENV = "REPLY_DRAFTER_LLM_KEY"
"""The environment variable the demo's endpoint key is read from (never written down)."""

SERVICE_YAML = """\
  # An LLM service: its releases change prompts, gated by a judge and canaried.
  {service}:
    description: Drafts a reply to a resident's message for a caseworker to check and send
    prompts:
      - reply-draft
    datasets:
      - path: {golden}
        role: golden
    slos:
      error_rate: 0.02
      latency_p95_ms: 4000
    eval:
      dataset: {golden}
      predict:
        llm:
          base_url: {base_url}
          model: stub-chat-1
          api_key_env: {key_env}
          concurrency: 16
          timeout_s: 30
          prices: {{input_per_1k: 0.00015, output_per_1k: 0.0006}}
      input_columns: [message, resident_name, reference, topic]
      label_column: expected
      slices: [topic]
      scorers:
        - contains
        - {{name: judge, prompt: reply-judge, alias: production, scale: [1, 5]}}
      non_regression: {{metric: judge, max_drop: 0.02}}
      slice_max_drop: 0.05
      slice_min_rows: 15
      budgets: {{mean_tokens: 250, p95_tokens: 300, cost_per_1k_requests: 0.1}}
    rollout:
      guardrails:
        error_rate: 0.02
      steps:
        - name: staff
          groups: [staff]
          percent: 0
          bake_minutes: 60
          min_samples: 100
        - name: canary-25
          percent: 25
          bake_minutes: 120
          min_samples: 300
        - name: full
          percent: 100
          bake_minutes: 60
"""


@dataclass(frozen=True)
class ReplyStory:
    """What the prompt chapter did."""

    first: str
    refused: PromptRelease
    passed: PromptRelease
    reached_step: str | None


def _example() -> Path:
    from releaser.demo.workspace import example_dir

    return example_dir().parent / "reply_drafter"


def add_reply_service(root: Path, base_url: str) -> None:
    """Add reply-drafter to the workspace at ``root`` (golden set pushed with DVC, prompt
    spec files, its block in releaser.yaml) and commit; its endpoint is ``base_url``."""
    from releaser.demo.workspace import track_and_push

    source = _example()
    (root / GOLDEN).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "golden.csv", root / GOLDEN)
    shutil.copytree(source / "prompts", root / PROMPTS, dirs_exist_ok=True)
    track_and_push(root, [GOLDEN])
    cfg = root / "releaser.yaml"
    text = cfg.read_text(encoding="utf-8").rstrip("\n") + "\n"
    block = SERVICE_YAML.format(service=SERVICE, golden=GOLDEN, base_url=base_url, key_env=KEY_ENV)
    cfg.write_text(text + block, encoding="utf-8")
    paths = ["releaser.yaml", PROMPTS, f"{GOLDEN}.dvc", str(Path(GOLDEN).parent / ".gitignore")]
    for args in (["add", *paths], ["commit", "-q", "--no-verify", "-m", "Add reply-drafter"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def _register(ws: Any, root: Path, file: str, *, production: bool) -> int:
    from releaser.api.prompts import promote_prompt, register_prompt

    version = register_prompt(ws, root / PROMPTS / file).version
    if production:
        promote_prompt(ws, version.name, version.version, "production", "first version")
    return int(version.version)


def _show(res: PromptRelease, report: Report) -> None:
    gate = res.gate
    if gate is None:
        return
    verdict = "PASSED" if gate.passed else "FAILED"
    judge = gate.metrics.get("judge")
    base = gate.baseline_metrics.get("judge")
    report(
        f"  eval gate against {gate.baseline_id}: {verdict}; judge {judge} (baseline {base}), "
        f"{gate.usage['requests'] if gate.usage else 0} LLM calls"
        + (
            f", mean {gate.usage['mean_tokens']:.0f} tokens"
            if gate.usage and gate.usage.get("mean_tokens") is not None
            else ""
        )
    )
    for name, info in gate.judges.items():
        report(f"  judge {info['prompt']} v{info['version']}: {info['calls']} calls ({name})")
    for failure in gate.failures:
        report(f"  FAIL {failure}")


def run_reply_story(root: Path, report: Report) -> ReplyStory:
    """Add reply-drafter, release prompt v1, then v2 (refused) and v3 (canaried)."""
    import os
    from datetime import UTC, datetime

    from releaser.api.gates import run_gate
    from releaser.api.prompt_release import release_prompt
    from releaser.api.releases import create_release
    from releaser.api.rollouts import start_rollout
    from releaser.api.workspace import open_workspace
    from releaser.demo.llm_stub import ChatStub
    from releaser.demo.traffic import drive_rollout, make_users

    stub = ChatStub()
    stub.require_key("demo-key-not-a-secret")
    os.environ[KEY_ENV] = "demo-key-not-a-secret"
    try:
        add_reply_service(root, stub.url)
        report(f"{SERVICE} joins the workspace: {GOLDEN} (100 letters), prompts, a judge")
        report(f"  its gate calls an OpenAI-compatible endpoint (a local stand-in at {stub.url})")
        ws = open_workspace(root)
        try:
            _register(ws, root, "reply-draft-v1.yaml", production=True)
            judge = _register(ws, root, "reply-judge.yaml", production=True)
            first = create_release(ws, SERVICE).release
            gate = run_gate(ws, SERVICE, first.id)
            start_rollout(ws, SERVICE, first.id, initial=True, reason="first deployment")
            report(
                f"release {first.id} (reply-draft v1, judge reply-judge v{judge}): gate "
                f"{'PASSED' if gate.passed else 'FAILED'} on thresholds; deployed as stable"
            )
            v2 = _register(ws, root, "reply-draft-v2.yaml", production=False)
            report(f"prompt reply-draft v{v2}: a shorter rewrite that also says what happens next")
            report(f"releaser prompt release reply-draft {v2} --service {SERVICE}")
            refused = release_prompt(ws, SERVICE, "reply-draft", v2)
            _show(refused, report)
            report("  no rollout started: the rewrite lost the payment-plan offer")
            v3 = _register(ws, root, "reply-draft-v3.yaml", production=False)
            report(
                f"prompt reply-draft v{v3}: v1's instructions, plus the next step and a sign-off"
            )
            report(f"releaser prompt release reply-draft {v3} --service {SERVICE}")
            passed = release_prompt(ws, SERVICE, "reply-draft", v3)
            _show(passed, report)
            reached = None
            if passed.rollout is not None:
                r = passed.rollout.rollout
                report(f"  rollout {r.id} started at '{r.current.name}' (staff first)")
                drive_rollout(
                    ws,
                    SERVICE,
                    error_rates={"baseline": 0.005, "candidate": 0.005},
                    start=datetime.now(UTC),  # the rollout started now: bake from here
                    users=make_users(20_000, seed=5),
                    stop_at_step="canary-25",
                )
                from releaser.api.rollout_status import rollout_status

                status = rollout_status(ws, SERVICE)
                reached = status.rollout.current.name if status.rollout else None
                report(f"  healthy on staff traffic: advanced to '{reached}' (25% of residents)")
            return ReplyStory(first.id, refused, passed, reached)
        finally:
            ws.close()
    finally:
        os.environ.pop(KEY_ENV, None)
        stub.close()
