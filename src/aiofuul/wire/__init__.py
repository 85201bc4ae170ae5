"""The wire: what goes to the API and what comes back, each rule in one place.

- ``models.py``: the msgspec Structs of the events endpoints, the only definition of
  their wire schema.
- ``validation.py``: the only copy of every rule an event must meet before it is queued
  (``shapes.py``: the documented shapes of the standard ``args`` keys; ``payload.py``:
  ``args`` and ``metadata`` as JSON, bounded in size).
- ``transport.py``: aiohttp behind a seam (``FuulClient(transport=...)``), the size cap
  and the ``Retry-After`` parser.
"""
