"""The Kubernetes client code the operator, the CLI and `flow.deploy()` share.

Role: `connecting` turns kubeconfig / in-cluster settings into one kubernetes-asyncio
Configuration and ApiClient (no hand-written kubeconfig parsing), `errors` is the one
vocabulary of failures (each names the object and the fix), `calls` tells a failed request
in that vocabulary, and `apply` server-side applies a Deployment. None imports kopf or the
operator, so the CLI and the SDK (behind the `cli` extra) can use them; the in-pod engine
never does. See ARCHITECTURE.md, "Package layers".
"""
