"""Drives a running Switchyard with the official A2A Python SDK's client.

Usage: python_client.py BASE_URL BINDING VERSION
  BINDING: JSONRPC or HTTP+JSON; VERSION: 1.0 or 0.3

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

        polling = ClientFactory(ClientConfig(streaming=False, httpx_client=http, supported_protocol_bindings=[binding])).create(card)

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
        streaming = ClientFactory(ClientConfig(streaming=True, httpx_client=http, supported_protocol_bindings=[binding])).create(card)
        seen = []
        async for event in streaming.send_message(SendMessageRequest(message=message("stream please"))):
            which = event.WhichOneof("payload")
            seen.append(which)
            if which == "task" and len(seen) == 1:
                say(step="streaming", task_id=event.task.id)
            if which == "status_update":
                seen[-1] = f"status_update:{TaskState.Name(event.status_update.status.state)}"
        say(step="stream_done", events=seen)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
