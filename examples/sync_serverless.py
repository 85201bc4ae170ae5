"""A serverless handler (AWS Lambda style): flush before returning, since the platform
may freeze the process as soon as the handler returns, and an exit hook never runs."""

from typing import Any

from aiofuul import SyncFuulClient, User

fuul = SyncFuulClient()  # once per container, reused by warm invocations


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    user = User(event["address"], "evm_address")
    dedup_id = fuul.track("trade", user, args={"size": event.get("size", 1)})
    delivered = fuul.flush(timeout=5)  # everything delivered or reported
    return {"dedup_id": dedup_id, "delivered": delivered}


if __name__ == "__main__":
    print(handler({"address": "0x52908400098527886E0F7030069857D2E4169EE7"}, None))
