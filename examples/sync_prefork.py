"""The fork sequence of gunicorn --preload, Celery prefork or multiprocessing: the client
is made before the fork, each child gets a fresh one (empty queue) on its first call.

    FUUL_API_KEY=... python examples/sync_prefork.py
"""

import os

from aiofuul import SyncFuulClient, User

fuul = SyncFuulClient()  # created in the "master", which starts nothing until used
user = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")

children = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        for i in range(10):
            fuul.track("trade", user, dedup_id=f"w{os.getpid()}-{i}")
        # A forked child that leaves with os._exit() skips exit hooks: flush first.
        os._exit(0 if fuul.flush(timeout=10) else 1)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
