"""Flask: one SyncFuulClient per process, tracked from a view (needs flask).

    FUUL_API_KEY=... flask --app examples/sync_flask.py run
    curl -X POST localhost:5000/trade -H 'content-type: application/json' \
         -d '{"address": "0x52908400098527886E0F7030069857D2E4169EE7", "size": 2}'

Pre-forked: ``gunicorn --preload -w 2 --chdir examples sync_flask:app``. The master
imports this module (the client starts nothing there), each worker starts a client of
its own on its first request and delivers what it queued when it exits (graceful
SIGTERM, max_requests); tests/test_integrations.py serves this app so.
Against a local sandbox (``aiofuul sandbox``): FUUL_BASE_URL=http://127.0.0.1:8080/api/v1/
"""

from typing import Any

from flask import Flask, request

from aiofuul import SyncFuulClient, User

app = Flask(__name__)
# Key from FUUL_API_KEY, URL from FUUL_BASE_URL (else production). Threads share it.
fuul = SyncFuulClient()


@app.post("/trade")
def trade() -> tuple[dict[str, Any], int]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("address"), str):
        return {"error": 'expected a JSON object with an "address"'}, 400
    try:
        # Non-blocking: queues the event and returns its dedup id; sent in the background.
        dedup_id = fuul.track(
            "trade", User(body["address"], "evm_address"), args={"size": body.get("size", 1)}
        )
    except ValueError as exc:  # aiofuul.ValidationError: the event would be refused
        return {"error": str(exc)}, 400
    return {"dedup_id": dedup_id}, 200
