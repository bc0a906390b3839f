"""What webhook notifications cost a rollback: nothing before traffic is back, bounded after.

Runs ``releaser rollback`` (CLI, sqlite store, a router in another process) on the
same mid-rollout state with: no webhooks (the baseline, measured in the same run),
one webhook answering at once on 127.0.0.1, and one that never answers
(``timeout_s: 1``). Targets:
- traffic back (command start -> every one of 10k ids on the baseline in the other
  process) is the same with any webhook: the switch is committed before anyone is told;
- a responsive webhook adds <= 0.2 s (median) to the command: mostly validating the
  whole releaser.yaml to read ``notifications:``, which a rollback otherwise skips;
- a hanging webhook's command ends within timeout_s + 1.5 s (exit 0, a warning).

Run: .venv/bin/python bench/bench_notify.py [RUNS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import _rollback_setup as setup  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 8
HANG_TIMEOUT_S = 1.0


def receiver() -> tuple[ThreadingHTTPServer, threading.Event]:
    """A local webhook: /ok answers 200 at once, /hang never answers."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/hang":
                release.wait(60)
                return
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, release


def runs(root: Path, snap: Path, config: str) -> tuple[list[float], list[float], str]:
    """(command start -> router on the baseline, CLI wall) per run, and the last stderr."""
    (root / "releaser.yaml").write_text(config)
    return setup.timed_rollbacks(root, snap, RUNS)


def main() -> None:
    server, release = receiver()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        setup.build(root)
        snap = Path(tmp) / "snap.db"
        setup.snapshot(root, snap)
        base = (root / "releaser.yaml").read_text()
        hook = "notifications:\n  - name: {name}\n    url: {url}\n    timeout_s: {t}\n"
        cases = {
            "no webhook": base,
            "webhook answering": base + hook.format(name="ok", url=f"{url}/ok", t=5),
            "webhook hanging": base + hook.format(name="hang", url=f"{url}/hang", t=HANG_TIMEOUT_S),
        }
        results = {name: runs(root, snap, config) for name, config in cases.items()}
    release.set()
    server.shutdown()
    print(f"rollback with webhook notifications, {RUNS} runs each (sqlite, CLI, 10k ids)")
    print(f"{'case':<20} {'traffic back p50':>17} {'max':>8} {'command p50':>12} {'max':>8}")
    for name, (back, walls, _err) in results.items():
        print(
            f"{name:<20} {statistics.median(back):>16.3f}s {max(back):>7.3f}s "
            f"{statistics.median(walls):>11.3f}s {max(walls):>7.3f}s"
        )
    base_back, base_wall, _ = results["no webhook"]
    ok_back, ok_wall, _ = results["webhook answering"]
    hang_back, hang_wall, hang_err = results["webhook hanging"]
    added = statistics.median(ok_wall) - statistics.median(base_wall)
    print(f"answering webhook adds {added:.3f} s to the command (target <= 0.2 s, median)")
    print(
        f"hanging webhook: command max {max(hang_wall):.2f} s (target <= "
        f"{HANG_TIMEOUT_S + 1.5:.1f} s); warned: {'was not told' in hang_err}"
    )
    print(
        "traffic back, median: "
        f"{statistics.median(base_back):.3f} s without webhooks (baseline), "
        f"{statistics.median(ok_back):.3f} s answering, {statistics.median(hang_back):.3f} s "
        "hanging (target: the same; the switch precedes every notification)"
    )


if __name__ == "__main__":
    main()
