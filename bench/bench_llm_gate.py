"""The eval gate against an LLM endpoint, beside a plain asyncio loop making the same calls.

Targets (issue 22): a gate over 500 rows against the local endpoint at 16 concurrent calls
takes at most 20% longer than the same 500 calls made by a plain asyncio loop with the same
concurrency (httpx, one client, a semaphore); a cached re-run takes under 1 s. A judge
scorer's own overhead is reported separately.

The endpoint is the local OpenAI-compatible stand-in (releaser.demo.llm_stub): no LLM can be
reached here. Its answers cost it a few ms each, so the figures compare the gate's own work
with the loop's, on the same server.

1. Predictions: the reply-drafter service with 500 golden rows and the ``contains`` scorer
   only. "loop" renders the prompt version for each row with promptregistry and posts the
   500 chat requests; "gate" is ``run_gate`` end to end, cold (the answer cache and the
   gate's prediction cache emptied, so every row is called): rendering, the calls,
   scoring, the store transaction, the MLflow run with its eval_rows.jsonl artifact. The
   two alternate for ROUNDS rounds; medians and the ratio are printed.
2. A cached re-run of that gate: in-process, and as a fresh ``releaser gate`` process.
3. The judge: the same service with the judge scorer added. The gate's judge stage (its
   own timer, in the report) against a plain loop posting the same 500 judge prompts.

Everything lives in a temporary directory. Run: .venv/bin/python bench/bench_llm_gate.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROWS = 500
CONCURRENCY = 16


def _golden(path: Path) -> None:
    """500 rows: the example's generator run with five seeds."""
    import importlib.util

    from releaser.demo.workspace import example_dir

    spec = importlib.util.spec_from_file_location(
        "reply_golden", example_dir().parent / "reply_drafter" / "golden.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = [r for seed in range(1, 6) for r in module.rows(seed)][:ROWS]
    path.write_text(module.to_csv(table), encoding="utf-8")


def _setup(root: Path, stub_url: str) -> None:
    from releaser.config.template import render_init_template
    from releaser.demo.reply_story import GOLDEN, add_reply_service
    from releaser.demo.workspace import build_example_workspace, track_and_push

    build_example_workspace(
        root, config_text=render_init_template("council-casework", "case-triage")
    )
    add_reply_service(root, stub_url)
    _golden(root / GOLDEN)
    cfg = root / "releaser.yaml"
    text = cfg.read_text(encoding="utf-8")
    text = text.replace("concurrency: 16", f"concurrency: {CONCURRENCY}")
    cfg.write_text(text, encoding="utf-8")
    track_and_push(root, [GOLDEN])
    subprocess.run(["git", "commit", "-qam", "500 golden rows"], cwd=root, check=True)


def _variant(root: Path, *, judge: bool) -> None:
    """Switch the suite's scorers: contains only, or contains and the judge."""
    cfg = root / "releaser.yaml"
    text = cfg.read_text(encoding="utf-8")
    line = "        - {name: judge, prompt: reply-judge, alias: production, scale: [1, 5]}\n"
    nr_judge = "non_regression: {metric: judge, max_drop: 0.02}"
    nr_plain = "non_regression: {metric: contains, max_drop: 0.02}"
    if judge and line not in text:
        text = text.replace("        - contains\n", "        - contains\n" + line)
        text = text.replace(nr_plain, nr_judge)
    if not judge:
        text = text.replace(line, "").replace(nr_judge, nr_plain)
    cfg.write_text(text, encoding="utf-8")
    subprocess.run(
        ["git", "commit", "-qam", f"judge: {judge}", "--allow-empty"], cwd=root, check=True
    )


def _cold(root: Path) -> None:
    shutil.rmtree(root / ".releaser" / "cache", ignore_errors=True)


async def _loop(url: str, texts: list[str], key: str) -> None:
    import httpx

    semaphore = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(text: str) -> str:
            async with semaphore:
                r = await client.post(
                    url + "/chat/completions",
                    json={
                        "model": "stub-chat-1",
                        "messages": [{"role": "user", "content": text}],
                        "temperature": 0.0,
                        "max_tokens": 200,
                    },
                    headers={"Authorization": f"Bearer {key}"},
                )
                r.raise_for_status()
                return str(r.json()["choices"][0]["message"]["content"])

        await asyncio.gather(*(one(t) for t in texts))


def _rendered(root: Path, name: str, extra: dict[str, list[str]] | None = None) -> list[str]:
    from promptregistry import render
    from releaser.api.workspace import open_workspace
    from releaser.demo.reply_story import GOLDEN

    ws = open_workspace(root)
    try:
        pv = ws.prompts.get(name, alias="production")
    finally:
        ws.close()
    rows = list(csv.DictReader(io.StringIO((root / GOLDEN).read_text(encoding="utf-8"))))
    texts = []
    for i, row in enumerate(rows):
        values = {**row, **{k: v[i] for k, v in (extra or {}).items()}}
        texts.append(render(pv, **{k: values[k] for k in pv.variables}))
    return texts


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    from releaser.api.gates import run_gate
    from releaser.api.prompts import promote_prompt, register_prompt
    from releaser.api.releases import create_release
    from releaser.api.workspace import open_workspace
    from releaser.demo.llm_stub import ChatStub
    from releaser.demo.reply_story import KEY_ENV, PROMPTS, SERVICE

    key = "bench-key"
    os.environ[KEY_ENV] = key
    stub = ChatStub()
    stub.require_key(key)
    tmp = Path(tempfile.mkdtemp(prefix="releaser-bench-llm-"))
    root = tmp / "ws"
    try:
        began = time.perf_counter()
        _setup(root, stub.url)
        _variant(root, judge=False)
        ws = open_workspace(root)
        for file in ("reply-draft-v1.yaml", "reply-judge.yaml"):
            v = register_prompt(ws, root / PROMPTS / file).version
            promote_prompt(ws, v.name, v.version, "production", "bench")
        plain = create_release(ws, SERVICE).release
        print(f"setup: {time.perf_counter() - began:.0f} s; {ROWS} rows, {CONCURRENCY} concurrent")
        texts = _rendered(root, "reply-draft")
        loop_s: list[float] = []
        gate_s: list[float] = []
        report: Any = None
        for i in range(rounds):
            order = ("loop", "gate") if i % 2 == 0 else ("gate", "loop")
            for side in order:
                if side == "loop":
                    t = time.perf_counter()
                    asyncio.run(_loop(stub.url, texts, key))
                    loop_s.append(time.perf_counter() - t)
                else:
                    _cold(root)
                    t = time.perf_counter()
                    report = run_gate(ws, SERVICE, plain.id, use_cache=False)
                    gate_s.append(time.perf_counter() - t)
        loop, gate = statistics.median(loop_s), statistics.median(gate_s)
        ratio = gate / loop
        print(
            f"predictions, {ROWS} rows: gate {gate:.2f} s (runs {_runs(gate_s)}), "
            f"plain asyncio loop {loop:.2f} s ({_runs(loop_s)}); "
            f"gate/loop {ratio:.2f}  target <= 1.20: {'PASS' if ratio <= 1.2 else 'FAIL'}"
        )
        assert report is not None and report.usage is not None
        t = time.perf_counter()
        again = run_gate(ws, SERVICE, plain.id)
        cached = time.perf_counter() - t
        assert again.cached
        exe = Path(sys.executable).parent / "releaser"
        t = time.perf_counter()
        subprocess.run(
            [str(exe), "gate", SERVICE, "--release", plain.id],
            cwd=root,
            check=True,
            capture_output=True,
        )
        process = time.perf_counter() - t
        print(
            f"cached re-run: {cached * 1000:.0f} ms in-process, {process:.2f} s as a fresh "
            f"'releaser gate' process  target < 1 s: {'PASS' if process < 1 else 'FAIL'}"
        )
        ws.close()
        _variant(root, judge=True)
        ws = open_workspace(root)
        judged = create_release(ws, SERVICE).release
        _cold(root)
        t = time.perf_counter()
        with_judge = run_gate(ws, SERVICE, judged.id, use_cache=False)
        total = time.perf_counter() - t
        info = with_judge.judges["judge"]
        answers = [a for a in _answers(root, judged.id)]
        judge_texts = _rendered(root, "reply-judge", {"answer": answers})
        t = time.perf_counter()
        asyncio.run(_loop(stub.url, judge_texts, key))
        judge_loop = time.perf_counter() - t
        print(
            f"judge, {info['calls']} calls: the gate's judge stage {info['seconds']:.2f} s, "
            f"a plain loop of the same calls {judge_loop:.2f} s (judge/loop "
            f"{info['seconds'] / judge_loop:.2f}); the whole gate with the judge {total:.2f} s"
        )
        ws.close()
    finally:
        stub.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _runs(values: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def _answers(root: Path, release_id: str) -> list[str]:
    """The release's answers, as its gate stored them."""
    from releaser.api.gate_predict import PREDICTIONS_KIND
    from releaser.api.workspace import open_workspace

    ws = open_workspace(root)
    try:
        for record in ws.store.list(PREDICTIONS_KIND, prefix=release_id):
            return [str(v) for v in record.value["values"]]
    finally:
        ws.close()
    raise SystemExit(f"no stored predictions of {release_id}")


if __name__ == "__main__":
    main()
