"""A short script: track, fall off the end. Queued events are delivered at exit.

FUUL_API_KEY=... python examples/sync_script.py
# against a local sandbox: aiofuul sandbox, then FUUL_BASE_URL=http://127.0.0.1:PORT/api/v1/
"""

from aiofuul import SyncFuulClient, User

fuul = SyncFuulClient()  # key from FUUL_API_KEY
user = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
for i in range(1_000):
    fuul.track("trade", user, args={"i": i})
# No close(): at exit the client delivers what is queued within config.close_timeout.
