"""The HTTP gateway: ``releaser serve`` in front of model endpoints.

A raw ASGI app (:class:`Gateway`) that assigns each request's unit to a release through the
router, proxies to that release's upstream, and records latency and errors per variant.
:func:`gateway_for` builds one for a workspace's service; :func:`run_gateway` serves it
with uvicorn and the gateway's own protocol (:func:`gateway_config`), which answers
proxied requests without going through ASGI. Importing this package does not load uvicorn.
"""

from __future__ import annotations

from releaser.serve.gateway import Gateway, GatewaySettings
from releaser.serve.server import (
    gateway_config,
    gateway_for,
    run_gateway,
    settings_of,
    upstreams_of,
)
from releaser.serve.upstreams import StaticUpstreams, Upstreams

__all__ = [
    "Gateway",
    "GatewaySettings",
    "StaticUpstreams",
    "Upstreams",
    "gateway_config",
    "gateway_for",
    "run_gateway",
    "settings_of",
    "upstreams_of",
]
