"""Flask: one SyncFuulClient per process, tracked from views (needs flask installed).

FUUL_API_KEY=... flask --app examples/sync_flask.py run
"""

from flask import Flask, request

from aiofuul import SyncFuulClient, User

app = Flask(__name__)
fuul = SyncFuulClient()


@app.post("/trade")
def trade() -> dict[str, str]:
    user = User(request.json["address"], "evm_address")  # type: ignore[index]
    return {"dedup_id": fuul.track("trade", user, args={"size": request.json.get("size", 1)})}  # type: ignore[union-attr]
