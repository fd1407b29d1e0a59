"""One row of the compatibility matrix, with the official Python SDK 0.3.x
client over one of its transports: through Switchyard to each named agent.

Usage: python_matrix_v03.py BASE_URL TRANSPORT AGENT...
  TRANSPORT: JSONRPC, HTTP+JSON or GRPC

The same report as python_matrix_v1.py, in v0.3's words translated to
v1's (states as TASK_STATE_*, event kinds as the v1 payload names), so the
test reads both rows alike.
"""

import asyncio
import json
import sys
import uuid

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import Message, Part, Role, TaskArtifactUpdateEvent, TaskStatusUpdateEvent, TextPart


def message(text, agent):
    return Message(
        message_id=str(uuid.uuid4()),
        role=Role.user,
        parts=[Part(root=TextPart(text=text))],
        metadata={"switchyard": {"agent": agent}},
    )


def state(s):
    return "TASK_STATE_" + s.value.upper().replace("-", "_")


def texts(parts):
    return [p.root.text for p in parts if isinstance(p.root, TextPart)]


async def main(base, transport, agents):
    async with httpx.AsyncClient(timeout=60) as http:
        card = await A2ACardResolver(http, base).get_agent_card()
        extra = {}
        if transport == "GRPC":
            import grpc

            extra["grpc_channel_factory"] = grpc.aio.insecure_channel

        def client(streaming):
            config = ClientConfig(streaming=streaming, httpx_client=http, supported_transports=[transport], **extra)
            return ClientFactory(config).create(card)

        blocking, streaming = client(False), client(True)
        for agent in agents:
            task = None
            async for event in blocking.send_message(message("hello", agent)):
                task = event[0]
            kinds, final, streamed = [], None, []
            async for event in streaming.send_message(message("hello", agent)):
                task_now, update = event
                if update is None:
                    kinds.append("task")
                elif isinstance(update, TaskStatusUpdateEvent):
                    kinds.append("status_update")
                    final = state(update.status.state)
                elif isinstance(update, TaskArtifactUpdateEvent):
                    kinds.append("artifact_update")
                    streamed += texts(update.artifact.parts)
            print(json.dumps({
                "agent": agent,
                "send_state": state(task.status.state),
                "send_text": [t for a in (task.artifacts or []) for t in texts(a.parts)],
                "stream_kinds": kinds,
                "stream_state": final,
                "stream_text": streamed,
            }), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
