"""Storage: the outboxes that keep accepted events across a crash, and the Redis
plumbing a fleet shares.

- ``outbox.py``: the SQLite outbox (``FuulClient(outbox="events.db")``), the embedded
  default, and the ``Journal`` protocol every outbox speaks to the engine.
- ``redis_outbox.py``: one backlog in a Redis stream for a fleet of workers
  (``outbox="redis://..."``); ``_redis_outbox_scripts.py`` its keys and Lua scripts,
  ``_redis_outbox_held.py`` what this client holds there, ``redis_outbox_admin.py``
  what ``aiofuul outbox redis://...`` reads and changes.
- ``_redis_url.py``: every Redis URL (outbox and shared limiter), checked when the client
  is made; ``redis_errors.py``: every Redis error sorted into down, busy or refused.
"""
