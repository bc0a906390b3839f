"""The runtime router SDK: which release does this unit get, and how did it go.

``Router(store_url)`` keeps an in-process snapshot of every service's route, refreshed in
the background when the store changes; ``assign`` answers from it in about a microsecond
without I/O, ``record`` counts per-variant request metrics that a background flush adds to
the store, and ``prompt`` loads the prompt version of the assigned release.
"""

from __future__ import annotations

from releaser.router.metrics_buffer import BufferCounts
from releaser.router.router import Router
from releaser.router.snapshot import Assignment, CompiledRoute, Snapshot, Variant, compile_route

__all__ = [
    "Assignment",
    "BufferCounts",
    "CompiledRoute",
    "Router",
    "Snapshot",
    "Variant",
    "compile_route",
]
