"""An A2A v0.3 agent built on the official Python SDK 0.3.x (JSON-RPC), for
delegation tests: Switchyard must read its v0.3 card and speak v0.3 to it.

Usage: python_agent_v03.py PORT

The same behaviour as python_agent.py: "python says: <text>" as an
artifact; "ask" asks a question first; "slow" works until canceled; "wait" works 3 s. Each
message and cancel it receives is printed as a JSON line.
"""

import asyncio
import json
import sys

import uvicorn

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.apps import A2AStarletteApplication
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentSkill, Part, TaskState, TextPart
from a2a.utils import new_task


def report(**fields):
    print(json.dumps(fields), flush=True)


class Echo(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        report(event="message", task=context.task_id, text=text)
        task = context.current_task
        answering = task is not None and task.status.state == TaskState.input_required
        if task is None:
            task = new_task(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        if text == "ask" and not answering:
            question = updater.new_agent_message([Part(root=TextPart(text="what shall I say?"))])
            await updater.requires_input(question, final=True)
            return
        if text == "slow":
            await asyncio.sleep(60)
        if text == "wait":
            await asyncio.sleep(3)
        await updater.add_artifact([Part(root=TextPart(text=f"python says: {text}"))], name="reply")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        report(event="cancel", task=context.task_id)
        task = context.current_task
        await TaskUpdater(event_queue, task.id, task.context_id).cancel()


def main(port: int) -> None:
    card = AgentCard(
        name="Python v0.3 echo",
        description="An agent on the official A2A Python SDK 0.3",
        url=f"http://127.0.0.1:{port}/",
        version="1.0.0",
        protocol_version="0.3.0",
        preferred_transport="JSONRPC",
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="py-echo", name="Echo", description="Echoes", tags=["echo"])],
    )
    handler = DefaultRequestHandler(agent_executor=Echo(), task_store=InMemoryTaskStore())
    app = A2AStarletteApplication(agent_card=card, http_handler=handler).build()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]))
