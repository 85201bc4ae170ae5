"""Celery with the prefork pool: a module-level SyncFuulClient (needs celery[redis]).

    cd examples
    CELERY_BROKER_URL=redis://localhost:6379/0 FUUL_API_KEY=... \
        celery -A sync_celery worker --pool=prefork --concurrency=2
    # elsewhere: sync_celery.track_trade.delay("0x52908400098527886E0F7030069857D2E4169EE7", 2)

The worker's main process imports this module and forks the pool: the client starts
nothing there, and each pool process starts a client of its own on its first task.
Pool processes end with os._exit(), which skips exit hooks: deliver what they queued on
``worker_process_shutdown`` (warm shutdown, max_tasks_per_child, autoscaling down).
"""

from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown

from aiofuul import SyncFuulClient, User

# CELERY_BROKER_URL (and CELERY_RESULT_BACKEND, to keep results) in the environment
# take precedence over this broker.
app = Celery("sync_celery", broker="redis://localhost:6379/0")
# Key from FUUL_API_KEY, URL from FUUL_BASE_URL (else production).
fuul = SyncFuulClient()


@app.task
def track_trade(address: str, size: int = 1) -> str:
    # Non-blocking: queues the event and returns its dedup id; sent in the background.
    # An event aiofuul refuses raises ValidationError here, failing the task.
    return fuul.track("trade", User(address, "evm_address"), args={"size": size})


@worker_process_shutdown.connect
def deliver_queued(**_: Any) -> None:
    # Runs in each pool process as it ends; waits at most 10 s for the queue to drain.
    fuul.close(timeout=10)
