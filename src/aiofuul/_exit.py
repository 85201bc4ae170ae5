"""aiofuul's one exit hook per process, and the one private stdlib hook it needs.

Queued events are delivered at exit by the clients' own threads (a ``SyncFuulClient``'s
loop) over sockets, DNS lookups and, with an outbox, SQLite commits on worker threads.
Two stdlib exit mechanisms run too late for that:

- ``atexit`` hooks run after ``threading._shutdown()``, which stops
  ``concurrent.futures`` from taking work (the DNS lookups of aiohttp and the outbox's
  commits run there): a drain from ``atexit`` fails with "cannot schedule new futures
  after interpreter shutdown".
- ``multiprocessing`` children leave through ``os._exit()``: ``atexit`` never runs there.

``threading._register_atexit`` (CPython, private, since 3.9) runs a function at the start
of ``threading._shutdown()``: before ``concurrent.futures``' own hook (they run in
reverse order of registration, and this module registers after importing
``concurrent.futures``), at a normal interpreter exit, and also at the end of every
``multiprocessing`` child (``BaseProcess._bootstrap`` calls ``threading._shutdown()``
before ``os._exit()``). It is the one private stdlib name aiofuul uses;
``tests/test_lifecycle_exit.py`` fails loudly if a Python version removes it. Without it
(another interpreter), ``atexit`` stands in: scripts still deliver, pool children do not.

Hooks are registered here once per process, not once per client: a service that makes
and closes clients in a loop must not grow a list of dead hooks.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401  (its exit hook must be registered before ours)
import logging
import threading
from collections.abc import Callable

__all__ = ["on_exit"]

log = logging.getLogger("aiofuul")

_hooks: list[Callable[[], None]] = []


def _run_hooks() -> None:
    """Run every hook, in registration order; one that fails does not stop the others
    (KeyboardInterrupt included: each hook handles its own and reports what it lost)."""
    for hook in list(_hooks):
        try:
            hook()
        except Exception:
            log.exception("aiofuul exit hook failed")


def on_exit(hook: Callable[[], None]) -> None:
    """Call ``hook()`` once at this process's exit (and at the end of each
    ``multiprocessing`` child forked from it), before thread pools stop. Each module
    registers its hook once, at import."""
    _hooks.append(hook)


def _install() -> bool:
    """Register :func:`_run_hooks` with ``threading``; False if that is not possible."""
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        return False
    try:
        register(_run_hooks)
    except RuntimeError:  # imported while the interpreter is already shutting down
        return True
    return True


#: Whether the exit hook runs before thread pools stop (see the module docstring).
EARLY_EXIT_HOOK = _install()
if not EARLY_EXIT_HOOK:  # pragma: no cover - not CPython >= 3.9
    atexit.register(_run_hooks)
