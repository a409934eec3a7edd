"""flowpod's in-process runtime: what `@flow` and `@task` do when called (private).

Role: the engine proper, in layers; a module imports only from layers below it (the
import-linter contract "The runtime's layers" in pyproject.toml checks it):

    pausing                          pause_flow_run / suspend_flow_run
    flows -> flow_calls -> flow_engine
    signals                          SIGTERM and interruption of a flow-run tree
    tasks -> task_calls -> task_engine
    contexts                         the run contexts and their context variables
    ops | pool                       blocking / async drivers; the sync worker pool
    futures                          TaskRunFuture and upstream resolution
    records | limits | parameters | annotations | settings
    threads                          interruptible threads

`flowpod/__init__.py` re-exports the public names; nothing outside flowpod imports
this package. See ARCHITECTURE.md, "Package layers".
"""

__all__: list[str] = []
