"""flowpod's development cluster: a real Kubernetes control plane on 127.0.0.1 and a test node
whose kubelet runs containers as local processes.

Used by `make demo` / `make cluster-up` (`python -m flowpod_devcluster up`), the benchmarks, and
the `cluster` fixture in tests/conftest.py. Installed editable with the checkout's dev extra
(`pip install -e '.[dev]'`), so it imports without any PYTHONPATH. Modules:

- plane: start, find and stop the plane (etcd, kube-apiserver, controller manager, scheduler,
  the test node); pki and processes: its certificates and its recorded processes.
- node: the test node (`python -m flowpod_devcluster.node`).
- waiting, manifests: polling helpers and Pod/Job builders for tests against the plane.
- build-binaries.sh: builds the pinned binaries into ~/.cache/flowpod (once, under a lock).
"""
