"""`python -m flowpod.engine`: run one flow run in this process.

Role: the command of every flow-run pod. With FLOWPOD_FLOW_RUN_NAME set (the operator's
Job sets it) it runs that FlowRun and reports to its status (flowpod.engine._in_pod).
Otherwise it is a minimal command line over flowpod.engine.run_flow_run for local use
and tests: `--entrypoint path.py:fn`, JSON `--parameters`, an optional JSON journal
(flowpod.reporting.JsonJournalReporter; external tools may append resume/cancel lines
to it); it prints the final state as JSON and exits 0 (Completed or Suspended), 143
(terminated by SIGTERM) or 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from flowpod import contract

__all__ = ["main"]


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m flowpod.engine",
                                     description="Run one flow run locally.")
    parser.add_argument("--entrypoint", required=True,
                        help="path/to/file.py:flow_function or package.module:flow_function")
    parser.add_argument("--parameters", default="{}", help="flow parameters as a JSON object")
    parser.add_argument("--journal",
                        help="append states and task-run summaries to this JSON-lines file")
    parser.add_argument("--flow-run-id",
                        help="stable run id (re-runs reuse persisted task results)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and os.environ.get(contract.ENV_FLOW_RUN_NAME):
        # Inside a FlowRun's pod (the operator's Job sets this): report to the FlowRun.
        from flowpod.engine import _in_pod

        return _in_pod.main()
    args = _arguments(argv)
    try:
        parameters = json.loads(args.parameters)
    except json.JSONDecodeError as exc:
        print(f"--parameters is not valid JSON ({exc}); give an object like '{{\"x\": 1}}'",
              file=sys.stderr)
        return 2
    if not isinstance(parameters, dict):
        print("--parameters must be a JSON object like '{\"x\": 1}'", file=sys.stderr)
        return 2

    import anyio

    from flowpod import engine, reporting
    from flowpod._runtime.contexts import ensure_console_logging
    from flowpod.errors import EntrypointError, TerminationSignal

    try:
        flow = engine.load_flow_from_entrypoint(args.entrypoint)
    except EntrypointError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    ensure_console_logging()
    reporter = reporting.JsonJournalReporter(args.journal) if args.journal else None
    state = anyio.run(lambda: engine.run_flow_run(flow, parameters, reporter,
                                                  flow_run_id=args.flow_run_id))
    print(json.dumps(state.to_wire()))
    if isinstance(state.data, TerminationSignal):
        return state.data.code  # type: ignore[return-value]
    return 0 if state.is_completed() or state.is_paused() else 1


if __name__ == "__main__":
    sys.exit(main())
