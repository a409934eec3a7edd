"""The flowpod test node: a kubelet that runs each pod's containers as local processes.

Started by flowpod_devcluster.plane as `python -m flowpod_devcluster.node --state-dir DIR
--node-name NAME --node-ip IP` against the real local control plane. The modules, from the
bottom up:

- kubeapi: async HTTP client for the API server with the node's own client certificate.
- quantities, images, cgroups: resource quantities, the image map, memory cgroups.
- environment, volumes: a container's env (incl. valueFrom) and the pod's volumes.
- containerlogs, launching, containerrunning: CRI-format log files, process launch in a
  private mount namespace and a memory cgroup, one container run from image to exit.
- statuses, podworkers: the pod status a kubelet reports, and one pod's whole lifecycle.
- registering, syncing, serving, kubelet: Node + Lease, the pod watch, the containerLogs
  endpoint, and the wiring of all of them.
"""
