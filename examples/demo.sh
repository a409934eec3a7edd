#!/usr/bin/env bash
# `make demo`: a FlowRun from `kubectl apply` to Completed on the local control plane.
#
# Starts (or reuses) the plane and its test node, installs the CRDs and the flow-run RBAC,
# starts the operator in the background (log: .cluster/logs/operator.log, PID:
# .cluster/operator.pid; stopped when this script exits), replaces the FlowRun of an earlier
# demo (and its Job) with a fresh one, applies examples/hello/ and waits for the run to
# succeed, then shows `kubectl get flowruns`, the pod's logs, and the `export` lines that point
# kubectl, helm and flowpod at the plane.
# Run from anywhere; the Makefile builds .venv (which holds flowpod_devcluster) first.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PY="${PY:-$ROOT/.venv/bin/python}"
STATE="$ROOT/.cluster"
NS=default
RUN=hello-example

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting the local control plane and test node (reused when already running)"
"$PY" -m flowpod_devcluster up --no-exports  # printed at the end instead

KUBECTL="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["bin_dir"])' \
  "$STATE/cluster.json")/kubectl"
k() { "$KUBECTL" --kubeconfig "$STATE/kubeconfig" "$@"; }

step "Installing the flowpod CRDs (crds/)"
k apply -f crds/
# Established comes a moment before the new kinds can be listed ("storage is initializing"),
# and `kubectl wait` fails outright on a CRD too new to have conditions: so wait by listing.
for _ in $(seq 300); do k get flowruns,fdeploy -A >/dev/null 2>&1 && break; sleep 0.2; done
k get flowruns,fdeploy -A >/dev/null

step "Letting flow-run pods report to their FlowRun in namespace '$NS' (examples/flow-run-rbac.yaml)"
k apply -n "$NS" -f examples/flow-run-rbac.yaml

stop_operator() {
  local pid
  pid="$(cat "$STATE/operator.pid" 2>/dev/null || true)"
  # Only a process that is really our operator: a stale PID may have been reused.
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q flowpod_operator; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/operator.pid"
}
stop_operator  # one left over by an interrupted demo

step "Starting the operator (log: .cluster/logs/operator.log)"
mkdir -p "$STATE/logs"
HEALTH_PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$PY" -m flowpod_operator --kubeconfig "$STATE/kubeconfig" --namespace "$NS" \
  --health-host 127.0.0.1 --health-port "$HEALTH_PORT" >>"$STATE/logs/operator.log" 2>&1 &
echo $! >"$STATE/operator.pid"
trap stop_operator EXIT
for _ in $(seq 100); do
  if "$PY" -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
      "http://127.0.0.1:$HEALTH_PORT/healthz" 2>/dev/null; then break; fi
  kill -0 "$(cat "$STATE/operator.pid")" 2>/dev/null || { tail -20 "$STATE/logs/operator.log"; exit 1; }
  sleep 0.1
done
echo "operator healthy on http://127.0.0.1:$HEALTH_PORT/healthz"

if k get flowrun -n "$NS" "$RUN" >/dev/null 2>&1; then
  step "Removing FlowRun $RUN and its Job, left by an earlier demo, so this run starts afresh"
  k delete flowrun -n "$NS" "$RUN" --wait=true
  # The garbage collector would remove the Job as well, but only after its next discovery
  # resync (every 30 s) has taught it the FlowRun kind: right after a fresh plane's first demo,
  # the new run of this name waited ~35 s for that. Deleting the Job ourselves is immediate.
  k delete job -n "$NS" -l "flowpod.io/flow-run=$RUN" --wait=true
fi

step "Applying examples/hello/ (a Deployment and a FlowRun of it)"
k apply -n "$NS" -f examples/hello/

step "Waiting for FlowRun $RUN to succeed"
if ! k wait -n "$NS" --for=condition=Succeeded --timeout=120s "flowrun/$RUN"; then
  k get flowrun -n "$NS" "$RUN" -o yaml
  tail -20 "$STATE/logs/operator.log"
  exit 1
fi

step "kubectl get flowruns"
k get flowruns -n "$NS" -o wide

step "The pod's logs"
k logs -n "$NS" "pod/$(k get flowrun -n "$NS" "$RUN" -o jsonpath='{.status.podName}')"

step "Result"
echo "$(k get flowrun -n "$NS" "$RUN" -o jsonpath='{.status.result.value}')"
printf '\nDone. The plane keeps running (stop it with `make cluster-down`); the operator stops now.\n'
printf '\nTo use kubectl, helm and flowpod with the plane, run:\n'
"$PY" -m flowpod_devcluster env
