"""Drives a running Switchyard with the official A2A Python SDK 0.3.x client
over one v0.3 transport.

Usage: python_client_v03.py BASE_URL TRANSPORT
  TRANSPORT: JSONRPC, HTTP+JSON or GRPC

Prints one JSON object per line describing what it observed (states in
v1's words, TASK_STATE_*, so the Rust test reads every version alike), and
says when it is streaming or subscribing so the test can drive the task.
"""

import asyncio
import json
import sys
import uuid

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    GetTaskPushNotificationConfigParams,
    Message,
    MessageSendConfiguration,
    Part,
    PushNotificationConfig,
    Role,
    Task,
    TaskIdParams,
    TaskPushNotificationConfig,
    TaskQueryParams,
    TaskStatusUpdateEvent,
    TextPart,
)


def say(**fields):
    print(json.dumps(fields), flush=True)


def message(text):
    return Message(message_id=str(uuid.uuid4()), role=Role.user, parts=[Part(root=TextPart(text=text))])


def state(s):
    return "TASK_STATE_" + s.value.upper().replace("-", "_")


def config(transport, http, streaming, polling=False):
    extra = {}
    if transport == "GRPC":
        import grpc

        extra["grpc_channel_factory"] = grpc.aio.insecure_channel
    return ClientConfig(
        streaming=streaming, polling=polling, httpx_client=http, supported_transports=[transport], **extra
    )


def kind(event):
    if isinstance(event, tuple):
        _, update = event
        if update is None:
            return "task"
        if isinstance(update, TaskStatusUpdateEvent):
            return f"status_update:{state(update.status.state)}"
        return "artifact_update"
    return "message"


async def main(base, transport):
    async with httpx.AsyncClient(timeout=30) as http:
        card = await A2ACardResolver(http, base).get_agent_card()
        offered = {i.transport: i.url for i in card.additional_interfaces or []}
        say(step="card", streaming=card.capabilities.streaming, url=offered.get(transport))

        # Sent without waiting (non-blocking), then read back.
        polling = ClientFactory(config(transport, http, False, polling=True)).create(card)
        task = None
        async for event in polling.send_message(message("hello")):
            task = event[0] if isinstance(event, tuple) else event
        assert isinstance(task, Task), task
        say(step="send", task_id=task.id, state=state(task.status.state))

        got = await polling.get_task(TaskQueryParams(id=task.id, history_length=5))
        say(step="get", task_id=got.id, state=state(got.status.state), history=len(got.history or []))

        created = await polling.set_task_callback(
            TaskPushNotificationConfig(
                task_id=task.id,
                push_notification_config=PushNotificationConfig(id="hook-1", url="https://hooks.example.com/a2a", token="tok"),
            )
        )
        fetched = await polling.get_task_callback(
            GetTaskPushNotificationConfigParams(id=task.id, push_notification_config_id="hook-1")
        )
        say(
            step="push_config",
            created=created.push_notification_config.id,
            task_id=fetched.task_id,
            url=fetched.push_notification_config.url,
            token=fetched.push_notification_config.token,
        )

        canceled = await polling.cancel_task(TaskIdParams(id=task.id))
        say(step="cancel", state=state(canceled.status.state))

        # A stream of a new task; the test drives it to completion.
        streaming = ClientFactory(config(transport, http, True)).create(card)
        seen = []
        async for event in streaming.send_message(message("stream please")):
            seen.append(kind(event))
            if len(seen) == 1:
                say(step="streaming", task_id=event[0].id)
        say(step="stream_done", events=seen)

        # A subscription to a task left open; the test drives it.
        opened = None
        async for event in polling.send_message(message("subscribe to me")):
            opened = event[0]
        say(step="subscribing", task_id=opened.id)
        seen = []
        async for event in streaming.resubscribe(TaskIdParams(id=opened.id)):
            seen.append(kind(event))
        say(step="subscribe_done", events=seen)

        # Errors reach the client as errors.
        errors = {}
        for name, call in [
            ("get_unknown", lambda: polling.get_task(TaskQueryParams(id="00000000-0000-0000-0000-000000000000"))),
            ("cancel_completed", lambda: polling.cancel_task(TaskIdParams(id=opened.id))),
        ]:
            try:
                await call()
                errors[name] = "no error"
            except Exception as e:  # the test checks that one was raised
                errors[name] = type(e).__name__
        say(step="errors", **errors)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
