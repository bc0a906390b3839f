"""`releaser prompt promote` wall time with the file backend (target <= 0.3 s median).

Builds a throw-away workspace (git repo, `releaser init`, prompts on the file
backend), registers two versions, then times alternate promotions of v1 and v2
as separate processes, the way a person or a CI step runs them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "releaser"
RUNS = 20
SPEC = """\
name: bench-prompt
variables: {{case_text: str}}
template: |
  {text} {{{{ case_text }}}}
"""


def run(root: Path, *args: str) -> float:
    """Run the CLI in ``root``; return its wall time; fail loudly on a non-zero exit."""
    start = time.perf_counter()
    done = subprocess.run([str(BIN), *args], cwd=root, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"releaser {' '.join(args)} failed: {done.stderr}")
    return elapsed


def main() -> None:
    """Set up the workspace and print the timings."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        run(root, "init")
        cfg = root / "releaser.yaml"
        cfg.write_text(cfg.read_text().replace("backend: mlflow", "backend: file", 1))
        for i, text in enumerate(["Summarise:", "Summarise briefly:"], start=1):
            (root / f"v{i}.yaml").write_text(SPEC.format(text=text))
            run(root, "prompt", "register", f"v{i}.yaml")
        times = [
            run(
                root,
                "prompt",
                "promote",
                "bench-prompt",
                str(1 + i % 2),
                "--to",
                "production",
                "--reason",
                "bench",
            )
            for i in range(RUNS)
        ]
    med = statistics.median(times)
    p90 = sorted(times)[int(RUNS * 0.9) - 1]
    verdict = "PASS" if med <= 0.3 else "FAIL"
    print(
        f"releaser prompt promote (file backend): median {med:.3f} s  p90 {p90:.3f} s "
        f"(n={RUNS})  target median <= 0.30 s: {verdict}"
    )


if __name__ == "__main__":
    main()
