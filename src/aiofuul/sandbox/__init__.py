"""A real HTTP server that behaves like the Fuul events API, for tests and demos.

Example::

    from aiofuul.sandbox import Faults, Sandbox

    async with Sandbox(faults=Faults(error_rate=0.1, seed=1)) as sb:
        ...  # point a client at sb.url
        assert sb.stored_count("dep-1") == 1

Run one from the command line with ``python -m aiofuul.sandbox --port 8080``.
"""

from __future__ import annotations

from .exchange import RecordedRequest
from .faults import Faults
from .server import Sandbox
from .state import FuulState
from .throttle import RetryAfter
from .webhooks import WebhookRetry

__all__ = ["Faults", "FuulState", "RecordedRequest", "RetryAfter", "Sandbox", "WebhookRetry"]
