"""The decision layer: pure functions from what is observed to what should happen.

Role: everything the operator *decides*, with no I/O: `observations` (the inputs: a FlowRun
with its Deployment, Jobs and Pods), `views` (typed reads of those dicts), `diagnosing`
(how one attempt is doing, and the exact Crashed message), `validating` (parameters against
the Deployment's schema), `manifests` (the Job of an attempt), `actions` (the outputs) and
`deciding` (the decision itself). It imports neither the runtime, kopf, kubernetes_asyncio
nor asyncio (an import-linter contract in pyproject.toml holds it to that), so every rule
is tested with plain dicts and a fixed clock. See ARCHITECTURE.md, "Package layers".
"""
