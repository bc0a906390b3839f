"""Charts for the handover pack, drawn with matplotlib (Agg) as standalone SVG text.

Each function takes plain data (the facts the documents show) and returns an
SVG document, or ``None`` when there is nothing to draw. matplotlib is
imported inside the functions. The SVG is deterministic for the same data: a
fixed hash salt and no date in its metadata.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["eval_chart", "metrics_chart", "rollout_timeline_chart"]

LABELLED_ROLLOUTS = 8
"""Only the latest rollouts are named on the timeline; older labels would overlap."""

_BLUE, _ORANGE, _GREEN, _RED, _GREY = "#1f5fa6", "#e07b00", "#2e8540", "#c0392b", "#888888"


def _figure(width: float, height: float) -> Figure:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    matplotlib.rcParams["svg.hashsalt"] = "releaser"
    # Text as <text> (not paths) and a fixed layout: constrained layout and glyph paths
    # cost more than everything else in a pack.
    matplotlib.rcParams["svg.fonttype"] = "none"
    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.88, bottom=0.22, wspace=0.25)
    return fig


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def _ts(text: str) -> float:
    """An ISO time as a matplotlib date number: days since matplotlib's 1970 epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() / 86400.0


def rollout_timeline_chart(rollouts: list[dict[str, Any]], until: str | None = None) -> str | None:
    """Candidate traffic share over time for each rollout, with its decisions marked.

    A rollout still live is drawn up to ``until`` (the state's latest event), not to a clock.
    """
    if not rollouts:
        return None
    fig = _figure(9, 3.6)
    ax = fig.add_subplot()
    markers = {"advance": ("^", _BLUE), "promote": ("*", _GREEN), "rollback": ("X", _RED)}
    points: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in markers}
    labelled = rollouts[-LABELLED_ROLLOUTS:]
    labels: list[tuple[float, float, str]] = []
    for r in rollouts:
        steps = r["steps"]
        xs = [_ts(r["started_at"])]
        ys = [float(steps[0]["percent"])]
        for d in r["decisions"]:
            step = int(d["step"])
            action = d["action"]
            if action == "advance" and step + 1 < len(steps):
                share = float(steps[step + 1]["percent"])
            elif action == "promote":
                share = 100.0
            elif action in ("rollback", "abort"):
                share = 0.0
            else:
                share = ys[-1]
            at = _ts(d["at"])
            xs += [at, at]
            ys += [ys[-1], share]
            kind = "rollback" if action in ("rollback", "abort") else action
            if kind in points:
                points[kind][0].append(at)
                points[kind][1].append(share)
        if r["status"] in ("running", "paused") and until is not None and _ts(until) > xs[-1]:
            xs.append(_ts(until))
            ys.append(ys[-1])
        colour = {"promoted": _GREEN, "rolled_back": _RED, "aborted": _RED}.get(r["status"], _BLUE)
        ax.plot(xs, ys, color=colour, linewidth=1.6)
        if r in labelled:
            labels.append((xs[0], ys[0], r["id"]))
    seen = set()
    for kind, (px, py) in points.items():
        if px:
            marker, colour = markers[kind]
            ax.scatter(px, py, marker=marker, color=colour, s=60, zorder=3, label=kind)
            seen.add(kind)
    low, high = ax.get_xlim()
    if high - low < 1 / 24:  # less than an hour of history: show an hour around it
        middle = (low + high) / 2
        ax.set_xlim(middle - 1 / 48, middle + 1 / 48)
    ax.set_ylim(-5, 108)
    _place_labels(ax, labels)
    ax.set_ylabel("candidate share of everyone else (%)")
    ax.set_title("Rollouts: traffic share and decisions")
    ax.grid(True, alpha=0.3)
    if seen:
        ax.legend(loc="upper left", fontsize=8)
    ax.xaxis_date()
    fig.autofmt_xdate()
    return _svg(fig)


def _place_labels(ax: Any, labels: list[tuple[float, float, str]]) -> None:
    """Name each rollout where it starts, stacking names that would overlap.

    Rollouts started close together (within a tenth of the time shown) at the same
    share would print their names on top of each other: each such name goes one line
    higher than the one before it.
    """
    low, high = ax.get_xlim()
    near = (high - low) / 10
    placed: list[tuple[float, float, int]] = []
    for x, y, name in sorted(labels):
        level = 0
        for px, py, plevel in placed:
            if abs(px - x) < near and abs(py - y) < 5 and plevel >= level:
                level = plevel + 1
        placed.append((x, y, level))
        ax.annotate(
            name,
            (x, y),
            textcoords="offset points",
            xytext=(2, 6 + 9 * level),
            fontsize=7,
            color=_GREY,
        )


def metrics_chart(
    rollout_id: str,
    per_step: list[dict[str, Any]],
    *,
    error_slo: float | None,
    latency_slo: float | None,
) -> str | None:
    """Error rate and p95 latency per step, baseline against candidate, with the SLO lines."""
    if not per_step:
        return None
    fig = _figure(9, 3.4)
    ax_err, ax_lat = fig.subplots(1, 2)
    names = [s["step"] for s in per_step]
    xs = list(range(len(names)))
    width = 0.38
    for offset, variant, colour in (
        (-width / 2, "baseline", _GREY),
        (width / 2, "candidate", _BLUE),
    ):
        errs = [(s[variant]["error_rate"] or 0.0) * 100 for s in per_step]
        lats = [s[variant]["latency_p95_ms"] or 0.0 for s in per_step]
        ax_err.bar([x + offset for x in xs], errs, width, color=colour, label=variant)
        ax_lat.bar([x + offset for x in xs], lats, width, color=colour, label=variant)
    if error_slo is not None:
        ax_err.axhline(error_slo * 100, color=_RED, linestyle="--", linewidth=1, label="SLO")
    if latency_slo is not None:
        ax_lat.axhline(latency_slo, color=_RED, linestyle="--", linewidth=1, label="SLO")
    for ax, title in ((ax_err, "error rate (%)"), (ax_lat, "p95 latency (ms)")):
        ax.set_xticks(xs, names, fontsize=8)
        ax.set_title(f"{rollout_id}: {title}", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    return _svg(fig)


def eval_chart(gate: dict[str, Any]) -> str | None:
    """The eval gate's metrics against the baseline, and each slice's change."""
    metrics = gate.get("metrics") or {}
    numeric = {k: v for k, v in sorted(metrics.items()) if isinstance(v, int | float)}
    slices = [s for s in gate.get("slices") or [] if isinstance(s.get("candidate"), int | float)]
    if not numeric and not slices:
        return None
    fig = _figure(9, 3.6)
    ax_m, ax_s = fig.subplots(1, 2, width_ratios=(1, 1.3))
    fig.subplots_adjust(wspace=0.5)
    baseline = gate.get("baseline_metrics") or {}
    names = list(numeric)
    xs = list(range(len(names)))
    ax_m.bar(
        [x - 0.2 for x in xs], [numeric[n] for n in names], 0.4, color=_BLUE, label="candidate"
    )
    base = [baseline.get(n) for n in names]
    if any(isinstance(b, int | float) for b in base):
        ax_m.bar(
            [x + 0.2 for x in xs],
            [b if isinstance(b, int | float) else 0 for b in base],
            0.4,
            color=_GREY,
            label="baseline",
        )
    ax_m.set_xlim(-1, len(names))
    ax_m.set_xticks(xs, names, fontsize=8)
    ax_m.set_title("metrics", fontsize=10)
    ax_m.legend(fontsize=7)
    ax_m.grid(True, axis="y", alpha=0.3)
    if slices:
        labels = [f"{x.get('column')}={x.get('value')}" for x in slices]
        ys = list(range(len(labels)))
        colours = [_GREEN if x.get("passed", True) else _RED for x in slices]
        ax_s.barh(ys, [float(x["candidate"]) for x in slices], color=colours)
        marks = [
            (y, float(x["baseline"]))
            for y, x in zip(ys, slices, strict=True)
            if isinstance(x.get("baseline"), int | float)
        ]
        if marks:
            ax_s.scatter(
                [b for _, b in marks],
                [y for y, _ in marks],
                marker="|",
                s=200,
                color="#000000",
                zorder=3,
                label="baseline",
            )
            ax_s.legend(fontsize=7)
        ax_s.set_yticks(ys, labels, fontsize=7)
        metric = slices[0].get("metric") or "metric"
        ax_s.set_title(f"{metric} per slice (red: failed)", fontsize=10)
        ax_s.grid(True, axis="x", alpha=0.3)
    else:
        ax_s.set_axis_off()
        ax_s.text(0.5, 0.5, "no slice results", ha="center", va="center")
    return _svg(fig)
