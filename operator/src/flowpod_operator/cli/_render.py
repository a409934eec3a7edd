"""How the CLI shows FlowRuns: state colours, ages and durations, tables and detail views.

Role: pure functions from FlowRun objects (as read from the API) to Rich renderables and
strings; no I/O, and "now" is passed in (the injectable clock) so output is testable. Lists
are rows first, then a Rich table for a terminal or a plain one (untruncated, one line per
object, kubectl's layout) for pipes and files.
Callers: flowpod_operator.cli._commands and ._watching.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping, Sequence

from rich.table import Table
from rich.text import Text

from flowpod import flowruns, states
from flowpod.contract import parse_time_or_none as parse_time

__all__ = ["state_text", "run_duration", "age", "runs_table", "run_detail",
           "parse_time", "state_line", "runs_rows", "deployments_rows", "rich_table",
           "plain_table", "as_json"]

_STYLES = {
    states.StateType.SCHEDULED: "cyan",
    states.StateType.PENDING: "cyan",
    states.StateType.RUNNING: "bold blue",
    states.StateType.PAUSED: "yellow",
    states.StateType.CANCELLING: "magenta",
    states.StateType.COMPLETED: "bold green",
    states.StateType.FAILED: "bold red",
    states.StateType.CRASHED: "bold red",
    states.StateType.CANCELLED: "magenta",
}


def _state(run: Mapping[str, Any]) -> states.State | None:
    try:
        return flowruns.current_state(run)
    except ValueError:
        return None  # a malformed status is shown as unknown, not a crash of the CLI


def state_text(run: Mapping[str, Any]) -> Text:
    state = _state(run)
    if state is None:
        return Text("-", style="dim")
    return Text(state.name, style=_STYLES.get(state.type, ""))


def run_duration(run: Mapping[str, Any], now: datetime) -> str:
    """endTime - startTime when final, now - startTime while running, '-' before it ran."""
    status = run.get("status") or {}
    start, end = parse_time(status.get("startTime")), parse_time(status.get("endTime"))
    if start is None:
        return "-"
    return flowruns.human_duration(((end or now) - start).total_seconds())


def age(run: Mapping[str, Any], now: datetime) -> str:
    created = parse_time(run.get("metadata", {}).get("creationTimestamp"))
    return flowruns.human_duration((now - created).total_seconds()) if created else "-"


def _target(run: Mapping[str, Any]) -> str:
    spec = run.get("spec") or {}
    return spec.get("deploymentName") or spec.get("entrypoint") or "-"


Cell = str | Text


def runs_rows(runs: list[Mapping[str, Any]], now: datetime, *,
              all_namespaces: bool = False) -> tuple[list[str], list[list[Cell]]]:
    """The header and rows of the runs table (`flowpod get`)."""
    header = ["NAME", "DEPLOYMENT", "STATE", "DURATION", "AGE", "MESSAGE"]
    rows: list[list[Cell]] = []
    for run in runs:
        meta = run.get("metadata", {})
        message = ((run.get("status") or {}).get("state") or {}).get("message", "")
        cells: list[Cell] = [meta.get("name", ""), _target(run), state_text(run),
                             run_duration(run, now), age(run, now), message]
        if all_namespaces:
            cells.insert(0, meta.get("namespace", ""))
        rows.append(cells)
    return (["NAMESPACE", *header] if all_namespaces else header), rows


def deployments_rows(deployments: list[Mapping[str, Any]], now: datetime, *,
                     all_namespaces: bool = False) -> tuple[list[str], list[list[Cell]]]:
    """The header and rows of `flowpod get deployments`; the schedule columns come from the
    status the operator's scheduler writes ('-' until it has written one)."""
    header = ["NAME", "ENTRYPOINT", "IMAGE", "SCHEDULE", "NEXT", "ACTIVE", "LAST", "AGE"]
    rows: list[list[Cell]] = []
    for deployment in deployments:
        meta, spec = deployment.get("metadata", {}), deployment.get("spec") or {}
        cells: list[Cell] = [meta.get("name", ""), spec.get("entrypoint", "-"),
                             spec.get("image", "-"), *_schedule_cells(deployment, now),
                             age(deployment, now)]
        if all_namespaces:
            cells.insert(0, meta.get("namespace", ""))
        rows.append(cells)
    return (["NAMESPACE", *header] if all_namespaces else header), rows


def _schedule_cells(deployment: Mapping[str, Any], now: datetime) -> list[Cell]:
    """SCHEDULE, NEXT (from now), ACTIVE, LAST (the last scheduled run's state and age)."""
    status = deployment.get("status") or {}
    ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), {})
    if ready.get("status") == "False":
        schedule: Cell = Text(str(ready.get("reason") or "NotReady"), style="bold red")
    else:
        schedule = status.get("schedule") or "-"
    upcoming = parse_time((status.get("nextScheduleTimes") or [None])[0])
    if upcoming is None:
        after = "-"
    elif upcoming <= now:
        after = "due"
    else:
        after = f"in {flowruns.human_duration((upcoming - now).total_seconds())}"
    active = status.get("activeRuns")
    last_time = parse_time(status.get("lastScheduleTime"))
    last = "-" if last_time is None else " ".join(filter(None, (
        status.get("lastRunState"),
        f"{flowruns.human_duration(max(0.0, (now - last_time).total_seconds()))} ago")))
    return [schedule, after, "-" if active is None else str(active), last]


def rich_table(header: list[str], rows: list[list[Cell]]) -> Table:
    """For a terminal: coloured, long messages folded to the screen's width."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in header:
        table.add_column(column, overflow="fold" if column == "MESSAGE" else "ellipsis")
    for row in rows:
        table.add_row(*row)
    return table


def plain_table(header: list[str], rows: list[list[Cell]]) -> str:
    """For pipes and files (as kubectl prints): no colour, nothing cut, one line per row,
    columns padded to their widest cell and separated by three spaces."""
    # Newlines and runs of blanks in a cell (a multi-line message) collapse to one space.
    lines = [header] + [[" ".join(str(cell).split()) for cell in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in lines)


def runs_table(runs: list[Mapping[str, Any]], now: datetime, *,
               all_namespaces: bool = False) -> Table:
    return rich_table(*runs_rows(runs, now, all_namespaces=all_namespaces))


def state_line(wire: Mapping[str, Any], now: datetime) -> Text:
    """One line of `run --watch`: time, state name (coloured by type) and its message."""
    line = Text(f"{now:%H:%M:%S} ", style="dim")
    try:
        style = _STYLES.get(states.StateType(wire.get("type")), "")
    except ValueError:
        style = ""
    line.append(str(wire.get("name") or wire.get("type") or "?"), style=style)
    if wire.get("message"):
        line.append(f"  {wire['message']}")
    return line


def as_json(value: Any) -> str:
    """A value as the JSON a user would type (`-p`), not a Python repr."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _exit_rows(run: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Exit code and container reason explain a crash; for a run that ended by the flow's own
    verdict (Failed: the flow raised, and the process then exited 0 as "Completed") they would
    only contradict the state, so they are shown for Crashed runs and non-zero exits only."""
    status = run.get("status") or {}
    state = _state(run)
    code = status.get("exitCode")
    if (state is not None and state.type is states.StateType.CRASHED) or code not in (None, 0):
        return [("Exit code", code), ("Reason", status.get("reason"))]
    return []


def _memory_text(status: Mapping[str, Any]) -> str | None:
    """status.memory, one attempt after the other: a raise after an OOMKilled attempt
    (spec.retryPolicy) shows as a larger limit on the next."""
    parts = [f"attempt {entry.get('attempt')}: limit {entry.get('limit') or 'none'}"
             + (f", request {entry['request']}" if entry.get("request") else "")
             for entry in status.get("memory") or ()]
    return "; ".join(parts) or None


_MAX_CHILDREN_SHOWN = 50


def _children_rows(children: Sequence[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    """One row per child run (name and state), after a line with the counts by state."""
    if not children:
        return []
    counts: dict[str, int] = {}
    for child in children:
        state = _state(child)
        name = state.name if state is not None else "no state yet"
        counts[name] = counts.get(name, 0) + 1
    rows: list[tuple[str, Any]] = [("Child runs", f"{len(children)} (" + ", ".join(
        f"{k} {v}" for k, v in counts.items()) + ")")]
    for child in children[:_MAX_CHILDREN_SHOWN]:
        rows.append(("", Text(f"{child['metadata']['name']}  ") + state_text(child)))
    if len(children) > _MAX_CHILDREN_SHOWN:
        rows.append(("", f"... and {len(children) - _MAX_CHILDREN_SHOWN} more"))
    return rows


def run_detail(run: Mapping[str, Any], now: datetime, *,
               children: Sequence[Mapping[str, Any]] = ()) -> Table:
    """`flowpod get RUN`: the fields a user debugging one run wants, in reading order, and
    the runs it started (flowpod.run_deployment) with their states."""
    meta, spec, status = run.get("metadata", {}), run.get("spec") or {}, run.get("status") or {}
    state = status.get("state") or {}
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("Name", meta.get("name")), ("Namespace", meta.get("namespace")),
        ("Deployment" if spec.get("deploymentName") else "Entrypoint", _target(run)),
        ("Image", spec.get("image")), ("State", state_text(run)),
        ("Message", state.get("message")), ("Run name", status.get("flowRunName")),
        ("Attempt", status.get("attempt")), ("Memory", _memory_text(status)),
        ("Job", status.get("jobName")),
        ("Pod", status.get("podName")), *_exit_rows(run),
        ("Started", status.get("startTime")),
        ("Ended", status.get("endTime")), ("Duration", run_duration(run, now)),
        ("Age", age(run, now)), ("Cancel requested", spec.get("cancel") or None),
        ("Parameters", as_json(spec["parameters"]) if spec.get("parameters") else None),
    ]
    task_runs = status.get("taskRuns") or {}
    if task_runs.get("counts"):
        rows.append(("Task runs", ", ".join(f"{k} {v}" for k, v in task_runs["counts"].items())))
    for failed in task_runs.get("failed") or []:
        rows.append(("Failed task", f"{failed.get('name')}: {failed.get('message', '')}"))
    result = status.get("result") or {}
    if result.get("notKept"):
        rows.append(("Result", result["notKept"]))
    elif result:
        rows.append(("Result", result.get("reference") or as_json(result.get("value"))))
    rows.extend(_children_rows(children))
    if status.get("logTail"):
        rows.append(("Last log lines", f"{len(status['logTail'])} kept in the status "
                                       f"(`flowpod logs {meta.get('name')}`)"))
    for key, value in rows:
        if value is not None and value != "":
            table.add_row(key, value if isinstance(value, Text) else str(value))
    history = status.get("stateHistory") or []
    if history:
        table.add_row("History", " -> ".join(h.get("name", "?") for h in history))
    return table
