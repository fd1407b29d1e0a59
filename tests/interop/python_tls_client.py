"""Sends one message to Switchyard's gRPC binding over TLS with the official
A2A Python SDK's client, trusting only the given CA.

Usage: python_tls_client.py BASE_URL CA_PEM_FILE

Reads the agent card from BASE_URL, keeps its gRPC interface, connects with
a secure channel whose only root is the CA, sends, and prints one JSON line
with the task's id and state.
"""

import asyncio
import json
import sys
import uuid

import grpc
import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import Message, Part, Role, SendMessageConfiguration, SendMessageRequest, TaskState


async def main(base, ca_file):
    with open(ca_file, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    async with httpx.AsyncClient(timeout=30) as http:
        card = await A2ACardResolver(http, base).get_agent_card()
        chosen = [i for i in card.supported_interfaces if i.protocol_binding == "GRPC" and i.protocol_version == "1.0"]
        del card.supported_interfaces[:]
        card.supported_interfaces.extend(chosen)
        config = ClientConfig(
            streaming=False,
            httpx_client=http,
            supported_protocol_bindings=["GRPC"],
            grpc_channel_factory=lambda url: grpc.aio.secure_channel(url, credentials),
        )
        client = ClientFactory(config).create(card)
        message = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text="over tls")])
        request = SendMessageRequest(message=message, configuration=SendMessageConfiguration(return_immediately=True))
        events = [e async for e in client.send_message(request)]
        task = events[0].task
        print(json.dumps({"task_id": task.id, "state": TaskState.Name(task.status.state)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:3]))
