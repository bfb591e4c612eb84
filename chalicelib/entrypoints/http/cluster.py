"""Seed 001's cluster routes: the system's info at the root, cluster/state and cluster/stats
(JSON views, and the stats as OpenMetrics or Prometheus text produced by prometheus_client),
the live executions' controllers and the alerts."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterator
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from chalice.app import Request, Response
from prometheus_client import exposition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector, CollectorRegistry

from chalicelib.bootstrap import get_container
from chalicelib.config import Settings
from chalicelib.domain.runs import Run
from chalicelib.domain.timefmt import iso
from chalicelib.domain.transitions import TERMINAL_EX, SupervisorState
from chalicelib.entrypoints.http.errors import json_response, query_int
from chalicelib.entrypoints.http.identity import caller, scoped
from chalicelib.entrypoints.http.routing import Routes, query
from chalicelib.entrypoints.http.views import controller_view
from chalicelib.services.cluster import ClusterState, ClusterStats, Held

NO_SCHEDULE = "NO_SCHEDULE"  # the supervisor's schedule has never fired
OPENMETRICS = "application/openmetrics-text"
PROMETHEUS_TEXT = "text/plain"


def function_name(settings: Settings, function: str) -> str:
    """The Lambda function's name as `chalice deploy` gives it: app-stage-function."""
    return f"cadenza-{settings.stage}-{function}"


def _held_entry(h: Held, assignment: str) -> dict[str, Any]:
    return {
        "worker_id": f"{h.run.ex_id}/{assignment}",
        "assignment": assignment,
        "pid": None,
        "ex_id": h.run.ex_id,
        "job_id": h.run.job_id,
        "slices": h.slices,
        "_status": str(h.run.status),
    }


def _worker_node(
    settings: Settings, function: str, entries: list[dict[str, Any]], total: int, busy: int
) -> dict[str, Any]:
    return {
        "node_id": function,
        "hostname": function_name(settings, function),
        "pid": None,
        "total": total,
        "state": "active" if entries else "idle",
        "available": max(0, total - busy),
        "active": entries,
    }


def state_view(state: ClusterState, settings: Settings) -> dict[str, Any]:
    """An object keyed by node id, as seed 001 shows it: the supervisor, then one node per
    worker function listing the work it holds."""
    sup = state.supervisor
    sup_state = str(sup.state) if sup is not None else NO_SCHEDULE
    ticking = sup is not None and sup.state != SupervisorState.HALTED
    supervisor: dict[str, Any] = {
        "node_id": "supervisor",
        "hostname": function_name(settings, "supervisor"),
        "pid": None,
        "total": 1,
        "state": sup_state,
        "available": 0 if ticking else 1,
        "active": (
            [{"worker_id": "supervisor", "assignment": "cluster_master", "pid": None}]
            if ticking
            else []
        ),
        "last_tick_at": iso(sup.record.last_tick_at) if sup is not None else None,
        "ticks": sup.record.ticks if sup is not None else 0,
        "reason": sup.record.reason if sup is not None else None,
    }
    start = [
        _held_entry(h, "execution_controller" if h.slices == 0 else "worker") for h in state.start
    ]
    sliced = [_held_entry(h, "worker") for h in state.slice]
    return {
        "supervisor": supervisor,
        # one invocation per run being started; a sliced run asks for `workers` at once
        "start_worker": _worker_node(settings, "start_worker", start, len(start), len(start)),
        "slice_worker": _worker_node(
            settings,
            "slice_worker",
            sliced,
            sum(max(h.run.workers, h.slices) for h in state.slice),
            sum(h.slices for h in state.slice),
        ),
    }


def stats_counters(stats: ClusterStats) -> dict[str, int]:
    t = stats.totals
    return {
        "processed": t.processed,
        "failed": t.failed,
        "queued": stats.queued,
        "job_duration": t.job_duration,
        "workers_joined": t.workers_joined,
        "workers_disconnected": t.workers_disconnected,
        # a Lambda worker whose lease expired never resumes its slice: its finish is refused
        "workers_reconnected": 0,
    }


def stats_view(stats: ClusterStats) -> dict[str, Any]:
    """Seed 001's shape: `slicer` repeats `controllers` for backwards compatibility."""
    counters = stats_counters(stats)
    return {"controllers": counters, "slicer": dict(counters)}


class StatsCollector(Collector):
    """The stats as metric families, labelled with the cluster (the stack's prefix)."""

    def __init__(self, stats: ClusterStats, cluster: str) -> None:
        self.counters = stats_counters(stats)
        self.cluster = cluster

    def _family(self, name: str, doc: str, key: str, gauge: bool = False) -> Metric:
        kind = GaugeMetricFamily if gauge else CounterMetricFamily
        family = kind(name, doc, labels=["cluster"])
        family.add_metric([self.cluster], self.counters[key])
        return family

    def collect(self) -> Iterator[Metric]:
        yield self._family("cadenza_slices_processed", "Slices completed.", "processed")
        yield self._family("cadenza_slices_failed", "Slices failed.", "failed")
        yield self._family("cadenza_slices_queued", "Slices in flight now.", "queued", True)
        yield self._family(
            "cadenza_job_duration_seconds", "Executions' run time, summed.", "job_duration"
        )
        yield self._family(
            "cadenza_workers_joined", "Workers asked for by started executions.", "workers_joined"
        )
        yield self._family(
            "cadenza_workers_disconnected",
            "Slices given up because their worker was lost.",
            "workers_disconnected",
        )
        yield self._family(
            "cadenza_workers_reconnected", "Lost workers that came back.", "workers_reconnected"
        )


def _media_types(accept: str | None) -> list[str]:
    return [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]


def stats_response(stats: ClusterStats, settings: Settings, accept: str | None) -> Response:
    """JSON, unless the Accept header asks for OpenMetrics or Prometheus text."""
    wanted = _media_types(accept)
    if OPENMETRICS not in wanted and PROMETHEUS_TEXT not in wanted:
        return json_response(stats_view(stats))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats, settings.prefix))
    if OPENMETRICS in wanted:
        body: bytes = openmetrics.generate_latest(registry)  # type: ignore[no-untyped-call]
        content_type = openmetrics.CONTENT_TYPE_LATEST
    else:
        body = exposition.generate_latest(registry)
        content_type = exposition.CONTENT_TYPE_PLAIN_0_0_4
    return Response(
        body=body.decode("utf-8"), status_code=200, headers={"Content-Type": content_type}
    )


routes = Routes()


def _version() -> str:
    try:
        return version("cadenza")
    except PackageNotFoundError:
        return "0+unknown"


@routes("/")
def system_info(request: Request) -> Response:
    settings = get_container().settings
    return json_response(
        {
            "name": "cadenza",
            "cadenza_version": _version(),
            "clustering_type": "serverless",
            "platform": sys.platform,
            "arch": platform.machine(),
            "python_version": platform.python_version(),
            "stage": settings.stage,
            "backend": os.environ.get("CADENZA_BACKEND", "aws"),
        }
    )


def _live(runs: list[Run]) -> Response:
    return json_response([controller_view(r) for r in runs if r.status not in TERMINAL_EX])


@routes("/cluster/controllers")
def cluster_controllers(request: Request) -> Response:
    return _live(scoped(request).cluster.controllers())


@routes("/cluster/state")
def cluster_state(request: Request) -> Response:
    c = scoped(request)
    view = state_view(c.cluster.state(), c.settings)
    agents = get_container().agents.as_(caller(request)).listing()
    return json_response({**view, **agent_nodes(agents)})


def agent_nodes(agents: list[dict[str, Any]]) -> dict[str, Any]:
    """Each remote agent the caller sees as a node (`agent:<name>`; an admin's view of two
    owners' agents of one name: `agent:<name>@<owner>`), its running tasks its workers."""
    nodes: dict[str, Any] = {}
    for a in agents:
        node_id = f"agent:{a['name']}"
        if node_id in nodes:
            node_id = f"{node_id}@{a['owner']}"
        active = [
            {
                "worker_id": task_id,
                "assignment": "worker",
                "pid": None,
                "ex_id": task_id.rsplit(".", 1)[0],
                "slices": 1,
            }
            for task_id in a["running_tasks"]
        ]
        nodes[node_id] = {
            "node_id": node_id,
            "hostname": a["name"],
            "pid": None,
            "total": len(active),
            "state": a["state"],
            "available": 0,
            "active": active,
            "labels": a["labels"],
            "version": a["version"],
            "last_heartbeat": a["last_heartbeat"],
        }
    return nodes


@routes("/cluster/stats", admin=True)
def cluster_stats(request: Request) -> Response:
    c = get_container()
    return stats_response(c.cluster.stats(), c.settings, request.headers.get("accept"))


@routes("/jobs/{job_id}/controller")
def job_controller(request: Request, job_id: str) -> Response:
    return _live([scoped(request).executions.current_of(job_id)])


@routes("/ex/{ex_id}/controller")
def ex_controller(request: Request, ex_id: str) -> Response:
    return _live([scoped(request).executions.by_ex(ex_id)])


@routes("/alerts", admin=True)
def alerts(request: Request) -> Response:
    """Hanging runs and slices the supervisor gave up on, newest first."""
    size = query_int(query(request), "size")
    size = 100 if size is None else max(1, min(size, 1000))
    found = get_container().cluster.alerts(size)
    return json_response([{**asdict(a), "created": iso(a.created)} for a in found])
