"""The local Kubernetes test cluster: a real control plane on 127.0.0.1 and a test node whose
kubelet runs containers as local processes. Used by tests/conftest.py, the Makefile and the demo.
"""
