"""A webhook receiver on 127.0.0.1 for the demo: what operations would see in their channel."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["BLOCK_MARK", "LocalReceiver", "notify_to"]

BLOCK_MARK = "# demo: notifications to a local receiver"
MAX_BODY = 1_048_576


class LocalReceiver:
    """An HTTP server in a thread that keeps the JSON body of every POST (answers 200)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                size = min(int(self.headers.get("Content-Length", "0")), MAX_BODY)
                try:
                    received.append(json.loads(self.rfile.read(size)))
                except ValueError:
                    pass
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/ops"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LocalReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


def notify_to(root: Path, url: str | None) -> None:
    """Add (``url``) or remove (None) a ``notifications:`` webhook in the demo's releaser.yaml,
    and commit, as an engineer would."""
    cfg = root / "releaser.yaml"
    text = cfg.read_text(encoding="utf-8").split(f"\n{BLOCK_MARK}\n", 1)[0]
    if url is not None:
        text += f"\n{BLOCK_MARK}\nnotifications:\n  - name: ops-channel\n    url: {url}\n"
    cfg.write_text(text, encoding="utf-8")
    message = "Tell the ops channel about releases" if url else "Stop the demo's webhook"
    subprocess.run(["git", "commit", "-qam", message], cwd=root, check=True)
