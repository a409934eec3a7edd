"""flowpod's in-process runtime: what `@flow` and `@task` do when called (private).

Role: the engine proper, in layers. A module imports only from layers below it, at top
level, inside functions and under TYPE_CHECKING alike (the import-linter contract "The
runtime's layers" in pyproject.toml checks it):

    pausing                      pause_flow_run / suspend_flow_run
    flows                        @flow, Flow: options, hooks, run names
    flow_calls                   which loop and thread a flow call runs on
    flow_engine                  a flow run from start to final state
    signals | tasks | hooks      SIGTERM and interruption | @task, Task: options, naming |
                                 calling hooks, claiming on_crashed/on_cancellation
    task_calls                   call, submit, map: how a task call reaches the engine
    task_engine                  a task run from Pending to final state
    runners                      the flow run's task runner: lifecycle, remote calls
    contexts                     the run contexts and their context variables
    ops | pool                   blocking / async drivers | the sync worker pool
    futures                      TaskRunFuture and upstream resolution
    records | limits | specs | deps
    parameters | annotations
    threads                      interruptible threads; the run's event loop

The engines are written against flowpod._runtime.specs (FlowSpec, TaskSpec), never the
user-facing Flow and Task that sit above them. `flowpod/__init__.py` re-exports the
public names; flowpod.engine reaches in for run_flow and RunDeps. See ARCHITECTURE.md,
"Package layers".
"""

__all__: list[str] = []
