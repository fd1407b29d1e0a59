"""One row of the compatibility matrix, with the official Python SDK 1.x
client: through Switchyard, over one binding, to each named agent.

Usage: python_matrix_v1.py BASE_URL BINDING AGENT...
  BINDING: JSONRPC, HTTP+JSON or GRPC (A2A 1.0)

For each agent (routed by message metadata `switchyard.agent`) it sends
"hello" blocking, then streams "hello", and prints one JSON line per agent
with what it saw: the states, the artifact text, the streamed event kinds.
"""

import asyncio
import json
import sys
import uuid

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import Message, Part, Role, SendMessageRequest, TaskState


def message(text, agent):
    m = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    m.metadata.update({"switchyard": {"agent": agent}})
    return m


def artifact_text(task):
    return [p.text for a in task.artifacts for p in a.parts if p.text]


async def main(base, binding, agents):
    async with httpx.AsyncClient(timeout=60) as http:
        card = await A2ACardResolver(http, base).get_agent_card()
        chosen = [i for i in card.supported_interfaces if i.protocol_binding == binding and i.protocol_version == "1.0"]
        del card.supported_interfaces[:]
        card.supported_interfaces.extend(chosen)
        extra = {}
        if binding == "GRPC":
            import grpc

            extra["grpc_channel_factory"] = grpc.aio.insecure_channel

        def client(streaming):
            config = ClientConfig(streaming=streaming, httpx_client=http, supported_protocol_bindings=[binding], **extra)
            return ClientFactory(config).create(card)

        blocking, streaming = client(False), client(True)
        for agent in agents:
            sent = [e async for e in blocking.send_message(SendMessageRequest(message=message("hello", agent)))]
            task = sent[-1].task
            kinds, final, texts = [], None, []
            async for event in streaming.send_message(SendMessageRequest(message=message("hello", agent))):
                which = event.WhichOneof("payload")
                kinds.append(which)
                if which == "status_update":
                    final = TaskState.Name(event.status_update.status.state)
                if which == "artifact_update":
                    texts += [p.text for p in event.artifact_update.artifact.parts if p.text]
            print(json.dumps({
                "agent": agent,
                "send_state": TaskState.Name(task.status.state),
                "send_text": artifact_text(task),
                "stream_kinds": kinds,
                "stream_state": final,
                "stream_text": texts,
            }), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
