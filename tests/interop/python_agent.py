"""An A2A agent built on the official Python SDK, for delegation tests.

Usage: python_agent.py PORT [BINDING [GRPC_PORT [CERT KEY]]]
  BINDING: JSONRPC (default), HTTP+JSON or GRPC. The card is served over
  HTTP on PORT whatever the binding; with GRPC, the agent itself listens on
  GRPC_PORT and its card offers nothing else; given a PEM certificate and
  key, over TLS (the card says https://).

It answers every message with an artifact "python says: <text>"; the
message "ask" makes it ask a question first, and the answer completes it;
"slow" keeps it working until it is canceled; "wait" works 3 s. Each message and each cancel
it receives is printed as a JSON line, so a test can check what arrived.
"""

import asyncio
import json
import sys

import uvicorn
from starlette.applications import Starlette

from a2a.helpers.proto_helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes.agent_card_routes import create_agent_card_routes
from a2a.server.routes.jsonrpc_routes import create_jsonrpc_routes
from a2a.server.routes.rest_routes import create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Part, TaskState


def report(**fields):
    print(json.dumps(fields), flush=True)


class Echo(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        text = context.get_user_input()
        report(event="message", task=context.task_id, text=text)
        answering = context.current_task is not None and context.current_task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        if context.current_task is None:
            await event_queue.enqueue_event(new_task(context.task_id, context.context_id, TaskState.TASK_STATE_SUBMITTED))
        await updater.start_work()
        if text == "ask" and not answering:
            question = updater.new_agent_message([Part(text="what shall I say?")])
            await updater.requires_input(question)
            return
        if text == "slow":
            await asyncio.sleep(60)
        if text == "wait":
            await asyncio.sleep(3)
        await updater.add_artifact([Part(text=f"python says: {text}")], name="reply")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        report(event="cancel", task=context.task_id)
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


async def main(port: int, binding: str, grpc_port: int | None, tls: tuple[str, str] | None) -> None:
    url = f"127.0.0.1:{grpc_port}" if binding == "GRPC" else f"http://127.0.0.1:{port}/"
    if binding == "GRPC" and tls:
        url = f"https://{url}"
    card = AgentCard(
        name="Python echo",
        description="An agent on the official A2A Python SDK",
        version="1.0.0",
        supported_interfaces=[AgentInterface(url=url, protocol_binding=binding, protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="py-echo", name="Echo", description="Echoes", tags=["echo"])],
    )
    handler = DefaultRequestHandler(agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card)
    routes = create_agent_card_routes(card)
    if binding == "JSONRPC":
        routes += create_jsonrpc_routes(handler, rpc_url="/")
    elif binding == "HTTP+JSON":
        routes += create_rest_routes(handler)
    servers = [uvicorn.Server(uvicorn.Config(Starlette(routes=routes), host="127.0.0.1", port=port, log_level="warning")).serve()]
    if binding == "GRPC":
        import grpc

        from a2a.server.request_handlers.grpc_handler import GrpcHandler
        from a2a.types import a2a_pb2_grpc

        server = grpc.aio.server()
        a2a_pb2_grpc.add_A2AServiceServicer_to_server(GrpcHandler(handler), server)
        address = f"127.0.0.1:{grpc_port}"
        if tls:
            cert, key = (open(path, "rb").read() for path in tls)
            server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
        else:
            server.add_insecure_port(address)
        await server.start()
        servers.append(server.wait_for_termination())
    await asyncio.gather(*servers)


if __name__ == "__main__":
    args = sys.argv[1:]
    tls = (args[3], args[4]) if len(args) > 4 else None
    asyncio.run(main(int(args[0]), args[1] if len(args) > 1 else "JSONRPC", int(args[2]) if len(args) > 2 else None, tls))
