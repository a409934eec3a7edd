"""flowpod_operator: the Kubernetes side of flowpod (operator, CLI, CRDs).

Role: the public surface is three modules over private layers (ARCHITECTURE.md, "Package
layers"): `running` starts the operator (`python -m flowpod_operator`, `flowpod operator`),
`cli` is the `flowpod` command, `crds` holds the resource models and writes crds/*.yaml.
Behind them: `_decisions` (pure: what should happen to a FlowRun), `_runtime` (kopf wiring,
the reconcile loop, the actuator and the operator's API client); beside it, the top-level
`flowpod_kube` holds the kubernetes-asyncio connection and error vocabulary the operator,
the CLI and `flow.deploy()` share.
Importing this package imports nothing else.
"""
