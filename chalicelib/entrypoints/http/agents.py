"""Remote agents. An owner's routes: /agents (list, add), /agents/{name} (show, remove). An
agent's own routes, called with the agent principal's credentials: /agent/register,
/agent/heartbeat, /agent/tasks (take work), /agent/tasks/{task_id}/report."""

from __future__ import annotations

from typing import Any

from chalice.app import Request, Response

from chalicelib.bootstrap import get_container
from chalicelib.domain.errors import InvalidInput
from chalicelib.entrypoints.http.errors import json_response, parse_json_body
from chalicelib.entrypoints.http.identity import caller
from chalicelib.entrypoints.http.routing import BODY_TYPES, Routes
from chalicelib.services.agents import AgentService, Report

routes = Routes()


def _agents(request: Request) -> AgentService:
    return get_container().agents.as_(caller(request))


def _body(request: Request, required: bool = True) -> dict[str, Any]:
    if not required and not request.raw_body:
        return {}
    body = parse_json_body(request.raw_body, get_container().settings.limits)
    if not isinstance(body, dict):
        raise InvalidInput("body: a JSON object", [{"field": "body", "reason": "not an object"}])
    return body


@routes("/agents")
def list_agents(request: Request) -> Response:
    return json_response(_agents(request).listing())


@routes("/agents", ("POST",), BODY_TYPES)
def add_agent(request: Request) -> Response:
    body = _body(request)
    added = _agents(request).add(
        body.get("name"), body.get("principal"), body.get("labels"), body.get("deadline_seconds")
    )
    return json_response(added, 201)


@routes("/agents/{name}")
def show_agent(request: Request, name: str) -> Response:
    return json_response(_agents(request).get(name))


@routes("/agents/{name}", ("DELETE",))
def remove_agent(request: Request, name: str) -> Response:
    _agents(request).remove(name)
    return json_response({"name": name, "removed": True})


@routes("/agent/register", ("POST",), BODY_TYPES)
def agent_register(request: Request) -> Response:
    body = _body(request, required=False)
    return json_response(_agents(request).register(body.get("labels"), body.get("version")))


@routes("/agent/heartbeat", ("POST",), BODY_TYPES)
def agent_heartbeat(request: Request) -> Response:
    held = _body(request, required=False).get("tasks", [])
    if not isinstance(held, list):
        raise InvalidInput("tasks: a list", [{"field": "tasks", "reason": "not a list"}])
    return json_response(_agents(request).heartbeat(held))


@routes("/agent/tasks", ("POST",), BODY_TYPES)
def agent_take(request: Request) -> Response:
    wanted = _body(request, required=False).get("max", 1)
    return json_response({"tasks": _agents(request).take(wanted)})


@routes("/agent/tasks/{task_id}/report", ("POST",), BODY_TYPES)
def agent_report(request: Request, task_id: str) -> Response:
    agents = _agents(request)
    agent = agents.me()  # a caller that is not an agent learns nothing of the body's faults
    return json_response(agents.report(task_id, _report(_body(request)), agent))


def _report(body: dict[str, Any]) -> Report:
    token, lines, end = body.get("token"), body.get("lines", []), body.get("end")
    if not isinstance(token, str) or not token:
        raise InvalidInput(
            "token: the task's lease token", [{"field": "token", "reason": "missing"}]
        )
    if not isinstance(lines, list):
        raise InvalidInput("lines: a list", [{"field": "lines", "reason": "not a list"}])
    if end is None:
        return Report(token, lines)
    if not isinstance(end, dict):
        raise InvalidInput("end: an object", [{"field": "end", "reason": "not an object"}])
    code, tail, error = end.get("exit_code"), end.get("tail"), end.get("error")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        raise InvalidInput(
            "end.exit_code: a whole number",
            [{"field": "end.exit_code", "reason": "not a whole number"}],
        )
    if tail is not None and not isinstance(tail, str):
        raise InvalidInput("end.tail: a string", [{"field": "end.tail", "reason": "not a string"}])
    if error is not None and not isinstance(error, str):
        raise InvalidInput(
            "end.error: a string", [{"field": "end.error", "reason": "not a string"}]
        )
    return Report(token, lines, True, code, tail, error)
