"""The operator's runtime: kopf wiring, the reconcile loop and everything with I/O.

Role: `wiring` registers kopf watch handlers that feed the `intake` (index + work queue);
the `loop` takes queued FlowRuns, asks the decision layer (flowpod_operator._decisions)
what to do and hands each action to the `actuator`, which calls the API through `kubeapi`.
`connecting` gives kopf the same credentials as the API client, `eventing` posts Events,
`logs` formats JSON log lines, `indexing` and `queueing` hold the in-memory state. Started
by flowpod_operator.running. See ARCHITECTURE.md, "Package layers".
"""
