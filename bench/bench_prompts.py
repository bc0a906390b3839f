"""Prompt SDK and registry figures, side by side in one run.

1. Cached load: ``promptregistry.load()`` per call vs ``mlflow.genai.load_prompt`` with
   MLflow's own cache, same prompt, same process (targets: ours <= 2 us, >= 20x faster).
2. Alias change seen by another process: p50/p99 over 50 promotions, from the start of
   ``promote()`` to the moment a child process looping on ``load()`` reports the new
   version (target: p99 <= 1 s), for the MLflow (sqlite) and file backends.
3. Promote wall time through the facade with the file backend (and MLflow for reference),
   in-process and as a fresh process (import + promote, roughly what a CLI call costs).

Everything lives in a temporary directory; nothing outside it is touched.
"""

from __future__ import annotations

import os
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import promptregistry  # noqa: E402
from promptregistry import (  # noqa: E402
    FileChangeSignal,
    FilePromptBackend,
    MlflowPromptBackend,
    PromptRegistry,
    PromptSpec,
)
from promptregistry.backend import PromptBackend  # noqa: E402

PROMOTIONS = 50
NAME = "bench-prompt"

CHILD = """
import sys, time
import promptregistry
promptregistry.configure(backend=sys.argv[1], signal=promptregistry.FileChangeSignal(sys.argv[2]))
seen = promptregistry.load(sys.argv[3], alias="production").version
print(f"READY {seen}", flush=True)
while True:
    version = promptregistry.load(sys.argv[3], alias="production").version
    if version != seen:
        seen = version
        print(f"{time.time():.6f} {version}", flush=True)
    time.sleep(0.001)
"""

PROMOTE_ONCE = """
import sys
from promptregistry import FileChangeSignal, FilePromptBackend, PromptRegistry
registry = PromptRegistry(FilePromptBackend(sys.argv[1]), signal=FileChangeSignal(sys.argv[2]))
registry.promote(sys.argv[3], int(sys.argv[4]), "production", "bench", "bench")
"""


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def per_call_us(fn: Callable[[], object], calls: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` mean time per call of ``fn``, in microseconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def child_env() -> dict[str, str]:
    """The child's environment: the repo importable, no inherited MLflow settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def setup(backend: PromptBackend, signal: FileChangeSignal) -> PromptRegistry:
    """Register two versions of the bench prompt and point production at v1."""
    registry = PromptRegistry(backend, signal=signal)
    for word in ("Hello", "Hi"):
        registry.register(
            PromptSpec(name=NAME, template=f"{word} {{{{ who }}}}", variables={"who": "str"})
        )
    registry.promote(NAME, 1, "production", "bench set-up", "bench")
    return registry


def bench_cached_load(work: Path) -> None:
    """Figure 1."""
    import mlflow

    uri = f"sqlite:///{(work / 'mlflow.db').as_posix()}"
    signal = FileChangeSignal(work / "signal-1")
    setup(MlflowPromptBackend(uri), signal)
    promptregistry.configure(backend=MlflowPromptBackend(uri), signal=signal)
    load = promptregistry.load
    assert load(NAME, alias="production").version == 1
    ours = per_call_us(lambda: load(NAME, alias="production"), 200_000)

    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLFLOW_REGISTRY_URI"] = uri
    ref = f"prompts:/{NAME}@production"
    assert int(mlflow.genai.load_prompt(ref).version) == 1  # warm MLflow's cache
    theirs = per_call_us(lambda: mlflow.genai.load_prompt(ref), 5_000)

    ratio = theirs / ours
    print("1. cached load, per call (best of 5)")
    print(
        f"   promptregistry.load()        {ours:8.3f} us   target <= 2 us: "
        f"{'PASS' if ours <= 2 else 'FAIL'}"
    )
    print(f"   mlflow.genai.load_prompt()   {theirs:8.3f} us   (MLflow's own cache, warm)")
    print(
        f"   ratio                        {ratio:8.1f} x    target >= 20x: "
        f"{'PASS' if ratio >= 20 else 'FAIL'}"
    )


def bench_visibility(label: str, backend: PromptBackend, uri: str, work: Path) -> None:
    """Figure 2 for one backend."""
    signal = FileChangeSignal(work / f"signal-{label}")
    registry = setup(backend, signal)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, uri, str(signal.path), NAME],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())

    threading.Thread(target=read, daemon=True).start()
    try:
        assert lines.get(timeout=120) == "READY 1"
        latencies = []
        jitter = random.Random(7)
        for i in range(PROMOTIONS):
            target = 2 if i % 2 == 0 else 1
            # promote at a random phase of the child's 250 ms check cycle, not in lockstep
            time.sleep(jitter.uniform(0, 0.3))
            started = time.time()
            registry.promote(NAME, target, "production", "bench", "bench")
            seen_at, version = lines.get(timeout=30).split()
            assert int(version) == target, (version, target)
            latencies.append(float(seen_at) - started)
    finally:
        proc.kill()
        proc.wait()
    p50, p99 = pct(latencies, 50), pct(latencies, 99)
    print(
        f"   {label:<7} p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   "
        f"max {max(latencies) * 1000:7.1f} ms   (n={len(latencies)})   "
        f"target p99 <= 1 s: {'PASS' if p99 <= 1 else 'FAIL'}"
    )


def bench_promote(label: str, registry: PromptRegistry) -> None:
    """Figure 3, in-process part, for one backend."""
    times = []
    for i in range(PROMOTIONS):
        start = time.perf_counter()
        registry.promote(NAME, 2 if i % 2 == 0 else 1, "production", "bench", "bench")
        times.append(time.perf_counter() - start)
    print(
        f"   {label:<28} median {statistics.median(times) * 1000:7.2f} ms   "
        f"p90 {pct(times, 90) * 1000:7.2f} ms   (n={len(times)})"
    )


def bench_promote_process(root: Path, signal: Path) -> None:
    """Figure 3, fresh-process part: import + promote with the file backend."""
    times = []
    for i in range(10):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", PROMOTE_ONCE, str(root), str(signal), NAME, str(1 + i % 2)],
            check=True,
            env=child_env(),
        )
        times.append(time.perf_counter() - start)
    print(
        f"   {'file, fresh process':<28} median {statistics.median(times) * 1000:7.2f} ms   "
        f"p90 {pct(times, 90) * 1000:7.2f} ms   (n={len(times)})"
    )


def main() -> None:
    """Run every figure and print it."""
    with tempfile.TemporaryDirectory(prefix="bench-prompts-") as tmp:
        work = Path(tmp)
        os.chdir(work)  # anything MLflow writes by default lands in the temp dir
        bench_cached_load(work)

        print(
            f"2. alias change seen by another process ({PROMOTIONS} promotions, "
            "promote() start -> child sees it; child checks the signal every 250 ms)"
        )
        mlflow_uri = f"sqlite:///{(work / 'visible.db').as_posix()}"
        bench_visibility("mlflow", MlflowPromptBackend(mlflow_uri), mlflow_uri, work)
        file_root = work / "files"
        bench_visibility("file", FilePromptBackend(file_root), file_root.as_uri(), work)

        print("3. promote wall time through the facade")
        signal = FileChangeSignal(work / "signal-3")
        bench_promote(
            "file, in-process", PromptRegistry(FilePromptBackend(file_root), signal=signal)
        )
        bench_promote(
            "mlflow sqlite, in-process",
            PromptRegistry(MlflowPromptBackend(mlflow_uri), signal=signal),
        )
        bench_promote_process(file_root, signal.path)


if __name__ == "__main__":
    main()
