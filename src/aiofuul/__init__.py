"""aiofuul: the asyncio client for the Fuul events API.

``track()`` queues an event and returns at once; a background sender delivers it on
``POST /v1/events`` while traffic is light and coalesces ``POST /v1/events/batch``
requests when it is not, never exceeding the API's rate limits in any sliding window.
Direct awaitable calls exist for every endpoint, and :mod:`aiofuul.sandbox` is a real
server that behaves like the API, for tests.

Example::

    from aiofuul import FuulClient, User

    async with FuulClient() as fuul:   # key from FUUL_API_KEY
        fuul.track("trade", User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address"),
                   args={"size": 2.5})
"""

from ._version import __version__
from .client import FuulClient
from .config import ClientConfig, QueueFullPolicy, RetryPolicy
from .engine.limits import DEFAULT_LIMITS, Limits, RateLimit
from .engine.seams import OnError, Stats
from .errors import (
    AmbiguousWriteError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientStateError,
    ConfigurationError,
    ConnectError,
    FuulError,
    FuulTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    QueueFullError,
    RateLimitError,
    ServerError,
    TransportError,
    UndeliveredError,
    UnprocessableEntityError,
    ValidationError,
    WebhookError,
)
from .storage.redis_errors import (
    RedisBusyError,
    RedisDownError,
    RedisRefusedError,
    SharedRedisError,
)
from .sync import SyncFuulClient
from .wire.models import (
    IDENTIFIER_TYPES,
    MAX_BATCH_EVENTS,
    Amount,
    BatchResult,
    Conversion,
    Currency,
    Event,
    EventPipeline,
    IdentifierType,
    SendResult,
    Trigger,
    TriggerExecution,
    User,
)
from .wire.transport import InsecureURLError

__all__ = [
    "DEFAULT_LIMITS",
    "IDENTIFIER_TYPES",
    "MAX_BATCH_EVENTS",
    "__version__",
    "APIError",
    "AmbiguousWriteError",
    "Amount",
    "AuthenticationError",
    "BadRequestError",
    "BatchResult",
    "ClientConfig",
    "ClientStateError",
    "ConfigurationError",
    "ConnectError",
    "Conversion",
    "Currency",
    "Event",
    "EventPipeline",
    "FuulClient",
    "FuulError",
    "FuulTimeoutError",
    "IdentifierType",
    "InsecureURLError",
    "Limits",
    "NotFoundError",
    "OnError",
    "PermissionDeniedError",
    "QueueFullError",
    "QueueFullPolicy",
    "RateLimit",
    "RateLimitError",
    "RedisBusyError",
    "RedisDownError",
    "RedisRefusedError",
    "RetryPolicy",
    "SendResult",
    "ServerError",
    "SharedRedisError",
    "Stats",
    "SyncFuulClient",
    "TransportError",
    "Trigger",
    "TriggerExecution",
    "UndeliveredError",
    "UnprocessableEntityError",
    "User",
    "ValidationError",
    "WebhookError",
]
