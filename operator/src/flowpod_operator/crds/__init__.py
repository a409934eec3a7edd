"""The flowpod custom resources: models, CEL rules and the CRD generator.

Role: the CRD layer, public because its models are the typed wire form of Deployments and
FlowRuns (the CLI validates a Deployment with them before sending it). `resources` holds the
pydantic models, `_cel` the API server's validation rules generated from the engine's state
table, and `crdgen` turns both into crds/*.yaml: `python -m flowpod_operator.crds` (what
`make crds` runs). Nothing here talks to a cluster or imports the operator's runtime.
See ARCHITECTURE.md, "Package layers".
"""
