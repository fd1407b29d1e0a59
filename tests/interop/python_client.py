"""Drives a running Switchyard with the official A2A Python SDK's client.

Usage: python_client.py BASE_URL BINDING VERSION
  BINDING: JSONRPC, HTTP+JSON or GRPC; VERSION: 1.0 or 0.3

Prints one JSON object per line describing what it observed, so the Rust
test that runs it can assert on the results (and drive the task's state
when the script says it is streaming).
"""

import asyncio
import json
import sys
import uuid

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    ListTaskPushNotificationConfigsRequest,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    TaskState,
)


def say(**fields):
    print(json.dumps(fields), flush=True)


def message(text):
    return Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])


def config(binding, http, streaming):
    extra = {}
    if binding == "GRPC":
        import grpc

        extra["grpc_channel_factory"] = grpc.aio.insecure_channel
    return ClientConfig(streaming=streaming, httpx_client=http, supported_protocol_bindings=[binding], **extra)


def kind(event):
    return event.WhichOneof("payload") if hasattr(event, "WhichOneof") else type(event).__name__


async def main(base, binding, version):
    async with httpx.AsyncClient(timeout=30) as http:
        card = await A2ACardResolver(http, base).get_agent_card()
        chosen = [i for i in card.supported_interfaces if i.protocol_binding == binding and i.protocol_version == version]
        if not chosen:
            say(step="card", error=f"no {binding} {version} interface")
            return
        del card.supported_interfaces[:]
        card.supported_interfaces.extend(chosen)
        say(step="card", name=card.name, streaming=card.capabilities.streaming)

        polling = ClientFactory(config(binding, http, False)).create(card)

        # Send without waiting, then read it back.
        request = SendMessageRequest(message=message("hello"), configuration=SendMessageConfiguration(return_immediately=True))
        events = [e async for e in polling.send_message(request)]
        task = events[0].task
        say(step="send", task_id=task.id, state=TaskState.Name(task.status.state), context_id=task.context_id)

        got = await polling.get_task(GetTaskRequest(id=task.id))
        say(step="get", task_id=got.id, state=TaskState.Name(got.status.state), history=len(got.history))

        if version == "1.0":
            listed = await polling.list_tasks(ListTasksRequest(page_size=10))
            say(step="list", ids=[t.id for t in listed.tasks], total=listed.total_size)

        canceled = await polling.cancel_task(CancelTaskRequest(id=task.id))
        say(step="cancel", state=TaskState.Name(canceled.status.state))

        # Stream a new task; the test drives it to completion once we say so.
        streaming = ClientFactory(config(binding, http, True)).create(card)
        seen = []
        async for event in streaming.send_message(SendMessageRequest(message=message("stream please"))):
            which = event.WhichOneof("payload")
            seen.append(which)
            if which == "task" and len(seen) == 1:
                say(step="streaming", task_id=event.task.id)
            if which == "status_update":
                seen[-1] = f"status_update:{TaskState.Name(event.status_update.status.state)}"
        say(step="stream_done", events=seen)

        if version != "1.0":
            return

        # Push notification configs: create, get, list, delete.
        created = await polling.create_task_push_notification_config(
            TaskPushNotificationConfig(task_id=task.id, id="hook-1", url="https://hooks.example.com/a2a", token="tok")
        )
        got_config = await polling.get_task_push_notification_config(
            GetTaskPushNotificationConfigRequest(task_id=task.id, id="hook-1")
        )
        listed_configs = await polling.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=task.id)
        )
        await polling.delete_task_push_notification_config(
            DeleteTaskPushNotificationConfigRequest(task_id=task.id, id="hook-1")
        )
        after_delete = await polling.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=task.id)
        )
        say(
            step="push_configs",
            created=created.id,
            url=got_config.url,
            token=got_config.token,
            listed=[c.id for c in listed_configs.configs],
            after_delete=len(after_delete.configs),
        )

        # Subscribe to a task that is still open; the test drives it.
        request = SendMessageRequest(message=message("subscribe to me"), configuration=SendMessageConfiguration(return_immediately=True))
        open_task = [e async for e in polling.send_message(request)][0].task
        say(step="subscribing", task_id=open_task.id)
        seen = []
        async for event in streaming.subscribe(SubscribeToTaskRequest(id=open_task.id)):
            which = event.WhichOneof("payload")
            if which == "status_update":
                which = f"status_update:{TaskState.Name(event.status_update.status.state)}"
            seen.append(which)
        say(step="subscribe_done", events=seen)

        # Errors arrive as the SDK's own exception types.
        errors = {}
        for name, call in [
            ("get_unknown", lambda: polling.get_task(GetTaskRequest(id="00000000-0000-0000-0000-000000000000"))),
            ("cancel_completed", lambda: polling.cancel_task(CancelTaskRequest(id=open_task.id))),
            ("list_bad_page", lambda: polling.list_tasks(ListTasksRequest(page_size=1000))),
            ("push_config_unknown", lambda: polling.get_task_push_notification_config(
                GetTaskPushNotificationConfigRequest(task_id=task.id, id="nope"))),
        ]:
            try:
                await call()
                errors[name] = "no error"
            except Exception as e:  # the type is what the test checks
                errors[name] = type(e).__name__
        say(step="errors", **errors)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
