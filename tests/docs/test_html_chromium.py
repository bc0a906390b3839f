"""The handover page in a real headless Chromium: charts render, nothing loads from the network."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from releaser.api.workspace import open_workspace
from releaser.docs.handover import build_handover
from releaser.docs.html import CSP

pytestmark = pytest.mark.slow
SERVICE = "case-triage"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHART_BLUE = (0x1F, 0x5F, 0xA6)  # the candidate colour of the charts (releaser.docs.charts)


def _screenshot(page: Path, out: Path, netlog: Path, profile: Path) -> None:
    assert CHROMIUM is not None
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--log-net-log={netlog}",
            f"--screenshot={out}",
            "--window-size=1400,16000",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _page_requests(netlog: Path) -> list[str]:
    """Network URLs the page asked for (the browser's own update checks are not the page's).

    Chromium logs each request's initiator: the page's origin for what a page
    loads, "not an origin" for the browser's own background requests.
    """
    data = json.loads(netlog.read_text(errors="replace"))
    urls: dict[int, set[str]] = {}
    initiators: dict[int, str] = {}
    for event in data.get("events", []):
        params = event.get("params") or {}
        source = int((event.get("source") or {}).get("id", -1))
        if "url" in params:
            urls.setdefault(source, set()).add(str(params["url"]))
        if "initiator" in params:
            initiators[source] = str(params["initiator"])
    return sorted(
        url
        for source, found in urls.items()
        for url in found
        if url.startswith(("http:", "https:", "ws:", "wss:"))
        and initiators.get(source) != "not an origin"
        and source in initiators
    )


def _near(pixel: tuple[int, ...], colour: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel[:3], colour, strict=True))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (run .ci/chromium.sh)")
def test_page_renders_charts_and_loads_nothing_from_the_network(rollout_copy, tmp_path) -> None:
    from PIL import Image

    ws = open_workspace(rollout_copy.root)
    try:
        result = build_handover(ws, SERVICE, tmp_path / "dist")
    finally:
        ws.close()
    page = result.html_path
    html = page.read_text(encoding="utf-8")
    assert f'content="{CSP}"' in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert html.count('src="data:image/svg+xml;base64,') >= 2

    # One tall screenshot (no scrolling in headless mode) holds the charts' sections.
    out, netlog = tmp_path / "page.png", tmp_path / "netlog.json"
    _screenshot(page, out, netlog, tmp_path / "profile")
    assert not _page_requests(netlog)
    colours = Image.open(out).convert("RGB").getcolors(1 << 24)
    assert colours is not None
    total = sum(n for n, _ in colours)
    non_white = sum(n for n, p in colours if sum(p) < 720) / total
    blue = sum(n for n, p in colours if _near(p, CHART_BLUE))
    assert len(colours) > 50, f"a blank screenshot ({len(colours)} colours)"
    assert non_white > 0.02
    assert blue > 1000, f"the charts' bars and lines are not on screen ({blue} pixels)"
    json.dumps(result.to_dict())  # the --json shape serialises


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (run .ci/chromium.sh)")
def test_the_network_check_sees_a_page_that_fetches(tmp_path) -> None:
    """Control: a page loading an image is caught by the net-log check; the policy stops it."""
    page = tmp_path / "fetching.html"
    page.write_text(
        '<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/chart.png"></body></html>',
        encoding="utf-8",
    )
    netlog = tmp_path / "netlog.json"
    _screenshot(page, tmp_path / "page.png", netlog, tmp_path / "profile")
    assert _page_requests(netlog) == ["http://127.0.0.1:9/chart.png"]
    # ... and the pack's policy stops the same page before it asks.
    page.write_text(
        f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '</head><body><img src="http://127.0.0.1:9/chart.png"></body></html>',
        encoding="utf-8",
    )
    _screenshot(page, tmp_path / "page2.png", netlog, tmp_path / "profile2")
    assert _page_requests(netlog) == []
