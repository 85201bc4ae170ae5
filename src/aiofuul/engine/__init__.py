"""The delivery engine: how an event accepted by ``track()`` reaches the API, or is
reported. One meaning per word; each piece of state has one owner, which changes it
through its named operations, while the other modules ask.

Glossary (the module that owns each piece of state in brackets):

accept
    ``track()`` takes a checked event: the ledger counts it in ``tracked`` and stamps
    it (a :class:`~aiofuul.engine.ledger.Pending`), the backlog queues it. Nothing accepted is
    ever lost silently: it is settled, once. [``ledger.py``: ``tracked``, stamps]
queue (the backlog)
    The accepted events waiting to be sent, in acceptance order, retries at the front,
    plus the *solo* queue; bounded together by ``max_queue`` with the ``queue_full``
    policy, applied there alone. [``backlog.py``: both deques, ``retries``, the wake
    threshold]
solo queue
    The events of a batch refused without naming its bad events: each is sent alone to
    find them. [``backlog.py``]
adopt
    Queue events a journal holds already (left by a previous run, or taken over from
    a client that died) without writing them again; ``max_queue`` applies.
    [``backlog.py``; the journal decides what to hand over]
lane
    One endpoint (``single`` = ``POST /v1/events``, ``batch``, ``status``,
    ``pipeline``, ``conversions``) with its limiters, counters, health (a refusal, its
    probe backoff, the slow-start window). Code passes :class:`~aiofuul.engine.lanes.Lane`
    objects; the scheduler, which holds none, names the two event lanes by an
    ``EventLane`` literal. [``lanes.py``]
slot
    A request's place on a lane, held from before it is sent until its answer: a local
    one in every limiter of the lane and, with ``limiter="redis://..."``, a shared one.
    [``lanes.py`` (``Slot``), ``limits.py`` (the windows)]
window (slow start)
    How many requests the background sender keeps in flight on a lane: 1 on first
    contact and after a 429, one more per answer. [``lanes.py``]
decide
    The pure choice of what to start now (or how long to sleep), from snapshots of the
    queue and the two event lanes. [``scheduler.py``: no state]
launch
    Start one request the scheduler decided: take a slot and, without a shared limiter,
    its events off the queue. [``sender.py`` asks, ``flights.py`` starts it]
flight
    One request under way, its events counted ``in_flight``. [``flights.py``: the
    tasks, ``in_flight``]
promise
    With a shared limiter, a flight waits for its shared slot before it takes events;
    meanwhile its events stay queued, promised to it. [``flights.py``: ``Promises``]
deliver
    Send one request in a held slot and judge the answer (the one table from an answer
    to an outcome); the lane learns from it. [``delivery.py``: no state]
outcome
    What an answer means: ``Delivered``, ``Duplicate``, ``RateLimited``, ``Retry``,
    ``Rejected``, ``Stopped``. [``delivery.py`` defines them]
apply
    Turn an outcome into queue and counter changes: the one place an answer changes
    them. [``outcomes.py``: which lanes are paused, what was said of the key]
retry now / retry later
    A 429 or a refusal (401/403/404) puts the events back at the front, charged no
    attempt; a failure (transport, 5xx) charges each an attempt and requeues it, or
    reports it once out of attempts or time (``RetryPolicy``). [``backlog.py``]
refused (stopped)
    A lane answered 401/403/404: it pauses and probes with one request at a time,
    backing off; its events wait up to ``max_elapsed``, then are reported ``stopped``.
    [``lanes.py``: ``stopped``, the probe time; ``outcomes.py``: the ERROR said]
settle
    An event reaches its end, counted once in exactly one of ``delivered``,
    ``duplicates``, ``rejected``, ``failed``, ``dropped``, ``handed_off`` (a
    ``Settlement``); the journal, ``flush()`` waiters, observers, and (for the last
    four) ``on_error`` and the log are told. [``ledger.py``: the counters; the backlog
    asks it]
reason
    Why a settled event was not delivered (``UndeliveredError.reason``, an
    ``UndeliveredReason``): ``rejected``, ``retries_exhausted``, ``stopped``,
    ``dropped``, ``shutdown``, ``handed_off``. [``errors.py``]
observer
    A function told of every settlement, outcome and waits
    (``FuulClient.add_observer``): how metrics time deliveries. [``seams.py`` defines
    it, ``ledger.py`` tells it]
journal
    The durable outbox told of every accepted and settled event (SQLite or Redis).
    [``seams.py``: the protocol; ``storage/outbox.py``, ``storage/redis_outbox.py``]
hand off
    Events a shared (Redis) journal holds, left at close for another client instead of
    lost. [``ledger.py`` counts; the journal says which]
hand over
    An event passed from another thread to the client's loop (``track_threadsafe``,
    the sync client). [``handoff.py``]
flush / hurry
    Wait until every event accepted so far is settled; meanwhile partial batches leave
    at once. [``sender.py``: the hurry count; ``ledger.py``: the waiters]
overload
    Events arriving faster than the key's ceiling, warned of once.
    [``overload.py``: the samples]
"""
