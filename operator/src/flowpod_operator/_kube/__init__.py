"""The Kubernetes client code the operator and the CLI share, on kubernetes-asyncio.

Role: `connecting` turns kubeconfig / in-cluster settings into one kubernetes-asyncio
Configuration and ApiClient (no hand-written kubeconfig parsing), and `errors` is the one
vocabulary of failures: each names the object and the fix. Neither imports kopf or the
operator's runtime, so the CLI can use them. See ARCHITECTURE.md, "Package layers".
"""
