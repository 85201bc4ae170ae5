"""Django: one SyncFuulClient per process, tracked from a view (needs django).

Settings, URLconf and view share this one file so that it runs as is; in a project,
create the client in a module of its own (say ``myapp/fuul.py``) and import it from
views, signals and tasks.

    FUUL_API_KEY=... python examples/sync_django.py runserver
    curl -X POST localhost:8000/trade -H 'content-type: application/json' \
         -d '{"address": "0x52908400098527886E0F7030069857D2E4169EE7", "size": 2}'

Pre-forked: ``gunicorn --preload -w 2 --chdir examples sync_django`` (its WSGI
``application``). The master starts nothing; each worker starts a client of its own on
its first request and delivers what it queued when it exits.
Against a local sandbox (``aiofuul sandbox``): FUUL_BASE_URL=http://127.0.0.1:8080/api/v1/
"""

import json
import sys

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_POST

from aiofuul import SyncFuulClient, User

settings.configure(
    SECRET_KEY="example-only-not-a-secret",
    ALLOWED_HOSTS=["localhost", "127.0.0.1"],
    ROOT_URLCONF=__name__,
)

# Key from FUUL_API_KEY, URL from FUUL_BASE_URL (else production). Threads share it;
# nothing starts until the first track(), so importing this costs nothing.
fuul = SyncFuulClient()


@require_POST
def trade(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body)
        user = User(body["address"], "evm_address")
        # Non-blocking: queues the event and returns its dedup id; sent in the background.
        dedup_id = fuul.track("trade", user, args={"size": body.get("size", 1)})
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # Bad JSON, or an event aiofuul refuses (ValidationError is a ValueError).
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"dedup_id": dedup_id})


urlpatterns = [path("trade", trade)]
# For gunicorn or uWSGI. At exit, queued events are delivered within close_timeout.
application = get_wsgi_application()

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
