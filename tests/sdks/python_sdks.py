"""Drives the Python tracking SDKs, unmodified, against Metrix.

    python3 tests/sdks/python_sdks.py SDK GATEWAY WRITE_KEY RUN

SDK is segment (segment-analytics-python) or rudder (rudder-sdk-python).
Sends every message of plan.json with gzip on, flushes, sends them all again
with the same message ids, flushes again. Exits 1 when the SDK reports an
error (it retries 5xx and 429, and reports what it gives up on).
"""

import json
import pathlib
import sys


def main():
    sdk, gateway, write_key, run = sys.argv[1:5]
    if sdk == "segment":
        from segment.analytics import Client
    elif sdk == "rudder":
        from rudderstack.analytics import Client
    else:
        raise SystemExit(f"unknown SDK {sdk}")
    errors = []
    client = Client(
        write_key=write_key,
        host=f"{gateway}/segment",
        gzip=True,
        max_retries=2,
        on_error=lambda error, batch: errors.append(f"{error} ({len(batch)} messages)"),
    )
    plan = json.loads((pathlib.Path(__file__).parent / "plan.json").read_text())
    ids = {"u1": f"{run}-{sdk}-py-u1", "u2": f"{run}-{sdk}-py-u2", "anon": f"{run}-{sdk}-py-anon"}
    for _attempt in range(2):
        for index, message in enumerate(plan["messages"]):
            send(client, fill(message, ids), f"{run}-{sdk}-py-{index}")
        client.flush()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        raise SystemExit(1)
    print(f"{sdk}: sent {len(plan['messages'])} messages twice")


def fill(value, ids):
    """The plan's placeholders replaced by this SDK's ids."""
    if isinstance(value, str):
        for name, text in ids.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, dict):
        return {key: fill(inner, ids) for key, inner in value.items()}
    return value


def send(client, message, message_id):
    call = message["call"]
    if call == "identify":
        client.identify(user_id=message["userId"], traits=message["traits"], message_id=message_id)
    elif call == "track":
        client.track(
            user_id=message.get("userId"),
            anonymous_id=message.get("anonymousId"),
            event=message["event"],
            properties=message["properties"],
            message_id=message_id,
        )
    elif call == "page":
        client.page(anonymous_id=message["anonymousId"], name=message["name"], properties=message["properties"], message_id=message_id)
    elif call == "screen":
        client.screen(user_id=message["userId"], name=message["name"], properties=message["properties"], message_id=message_id)
    elif call == "group":
        client.group(user_id=message["userId"], group_id=message["groupId"], traits=message["traits"], message_id=message_id)
    elif call == "alias":
        client.alias(previous_id=message["previousId"], user_id=message["userId"], message_id=message_id)
    else:
        raise SystemExit(f"unknown call {call}")


if __name__ == "__main__":
    main()
