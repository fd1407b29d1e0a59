"""Sends one message to a running Switchyard with the official A2A Python
SDK's client (JSON-RPC, A2A 1.0) and waits for the answer.

Usage: python_send.py BASE_URL TEXT
Prints one JSON line: the task's id and state.
"""

import asyncio
import json
import sys
import uuid

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import Message, Part, Role, SendMessageRequest, TaskState


async def main(base, text):
    async with httpx.AsyncClient(timeout=30) as http:
        card = await A2ACardResolver(http, base).get_agent_card()
        chosen = [i for i in card.supported_interfaces if i.protocol_binding == "JSONRPC" and i.protocol_version == "1.0"]
        del card.supported_interfaces[:]
        card.supported_interfaces.extend(chosen)
        client = ClientFactory(ClientConfig(streaming=False, httpx_client=http, supported_protocol_bindings=["JSONRPC"])).create(card)
        message = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
        events = [e async for e in client.send_message(SendMessageRequest(message=message))]
        task = events[-1].task
        print(json.dumps({"step": "sent", "task_id": task.id, "state": TaskState.Name(task.status.state)}), flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2]))
