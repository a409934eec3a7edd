"""The permissions the operator needs, as documentation and as data.

Role: `RBAC_RULES` (PolicyRule shape) lists every verb the operator's calls
(flowpod_operator._runtime.kubeapi) and watches use, and `LEADER_ELECTION_RULES` those of
the Lease; the Helm chart's Role/ClusterRole lists exactly these, and the chart's tests and
the integration tests run the operator with exactly these permissions.

  apiGroups     resources              verbs                      why
  flowpod.io    flowruns               get, list, watch, patch,   watch runs; re-read on 409;
                                       create, delete             label a run with its
                                                                  Deployment; start scheduled
                                                                  runs (create), cancel one a
                                                                  newer one replaces (patch);
                                                                  delete finished runs past
                                                                  their TTL or history limit
  flowpod.io    flowruns/status        patch                      every state write
  flowpod.io    flowruns/finalizers    update                     Job ownerReference with
                                                                  blockOwnerDeletion (needed
                                                                  when the OwnerReferences-
                                                                  PermissionEnforcement
                                                                  admission plugin is on)
  flowpod.io    deployments            get, list, watch           resolve a run's Deployment;
                                                                  read its schedules
  flowpod.io    deployments/status     patch                      Ready, next and last
                                                                  schedule times
  batch         jobs                   get, list, watch, create,  one Job per attempt; delete
                                       delete                     a cancelled run's Job; get
                                                                  one that already exists
  ""            pods                   list, watch, delete        follow pods; cancel = delete
  ""            pods/log               get                        a crashed run's last lines
  ""            events                 create, list               Events on FlowRuns; read
                                                                  the Events of a Job that
                                                                  makes no pod (FailedCreate)
  apiextensions.k8s.io                                            (none needed: the CRDs are
                customresourcedefinitions                          checked via discovery, which
                                                                  every authenticated user may
                                                                  read)

With --leader-election the operator also needs, in the Lease's namespace only (a Role):

  coordination.k8s.io  leases          get, create, update        campaign for, renew and
                                                                  release the Lease

Watching all namespaces needs these in a ClusterRole; `--namespace` lets a Role per
watched namespace do. No access to Secrets, ConfigMaps or Nodes is needed.
"""

from __future__ import annotations

from flowpod import contract

__all__ = ["RBAC_RULES", "LEADER_ELECTION_RULES"]

RBAC_RULES: tuple[dict[str, list[str]], ...] = (
    {"apiGroups": [contract.GROUP], "resources": [contract.FLOWRUNS],
     "verbs": ["get", "list", "watch", "patch", "create", "delete"]},
    {"apiGroups": [contract.GROUP], "resources": [f"{contract.FLOWRUNS}/status"],
     "verbs": ["patch"]},
    {"apiGroups": [contract.GROUP], "resources": [f"{contract.FLOWRUNS}/finalizers"],
     "verbs": ["update"]},
    {"apiGroups": [contract.GROUP], "resources": [contract.DEPLOYMENTS],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [contract.GROUP], "resources": [f"{contract.DEPLOYMENTS}/status"],
     "verbs": ["patch"]},
    {"apiGroups": ["batch"], "resources": ["jobs"],
     "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "list"]},
)
LEADER_ELECTION_RULES: tuple[dict[str, list[str]], ...] = (
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "verbs": ["get", "create", "update"]},
)
