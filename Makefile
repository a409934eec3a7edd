# flowpod's entry points. `make demo` and `make test` are the two commands in README.md.
# Everything runs from a local virtualenv (.venv) and a control plane built from source and
# cached in ~/.cache/flowpod (see tests/devcluster/flowpod_devcluster/build-binaries.sh). The
# plane is the flowpod_devcluster package, installed into .venv with the dev extra.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export GOTOOLCHAIN := local

.PHONY: demo test test-unit test-cluster bench bench-prefect-venv venv binaries node-binaries \
	images cluster-up cluster-down crds lint clean

demo: venv binaries ## Start the plane, test node and operator; run a FlowRun to Completed.
	bash examples/demo.sh

test: venv binaries node-binaries images lint ## Every test: hermetic unit tests and the real-cluster suites.
	$(PY) -m pytest tests -q

test-unit: venv ## Hermetic tests only (no control plane).
	$(PY) -m pytest tests -q -m "not cluster"

bench: venv binaries ## Benchmarks; they print their figures. The burst runs last (see its docstring).
	$(PY) tests/bench/engine_overhead.py
	$(PY) tests/bench/dask_overhead.py
	$(PY) -m flowpod_devcluster up
	$(PY) tests/bench/operator_latency.py
	$(PY) tests/bench/operator_apply.py
	$(PY) tests/bench/operator_burst.py

# Prefect 3 and prefect-dask for the side-by-side figures only (PREFECT_PYTHON in the two
# engine benchmarks); kept outside the repository, never a flowpod dependency. The Dask
# version is the one .venv has, so both talk to one cluster.
PREFECT_VENV := $(HOME)/.cache/flowpod/bench-prefect
bench-prefect-venv: venv ## Make $(PREFECT_VENV) (prefect, prefect-dask) for the benchmarks.
	test -x $(PREFECT_VENV)/bin/python || $(PYTHON) -m venv $(PREFECT_VENV)
	$(PREFECT_VENV)/bin/python -m pip install --quiet prefect prefect-dask \
	  "distributed==$$($(PY) -c 'import distributed; print(distributed.__version__)')"

lint: venv ## The engine must never import kopf or the operator.
	$(VENV)/bin/lint-imports

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

binaries: ## Build (cold, several minutes) or find (warm) the pinned Kubernetes binaries.
	bash tests/devcluster/flowpod_devcluster/build-binaries.sh >/dev/null

node-binaries: binaries ## Build or find kubelet, containerd, runc and CNI for the containerd node.
	bash tests/devcluster/flowpod_devcluster/build-node-binaries.sh >/dev/null

images: binaries ## Build (buildah, cached in ~/.cache/flowpod/images) the engine and operator images.
	bash tests/devcluster/flowpod_devcluster/build-images.sh >/dev/null

cluster-up: venv binaries ## Start the plane; writes .cluster/kubeconfig, prints the exports.
	$(PY) -m flowpod_devcluster up

cluster-down: ## Stop exactly the processes cluster-up started.
	$(PY) -m flowpod_devcluster down

crds: venv ## Regenerate crds/ (and the chart's copy) from the pydantic models.
	$(PY) -m flowpod_operator.crds
	cp crds/*.yaml charts/flowpod/crds/

clean: cluster-down
	rm -rf .cluster
