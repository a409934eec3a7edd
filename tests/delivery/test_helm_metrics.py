"""The chart's metrics delivery, rendered by the real (pinned) helm: a metrics Service in front
of the operator's /metrics port, an opt-in Prometheus Operator ServiceMonitor, and the Grafana
dashboard as a ConfigMap labelled for Grafana's sidecar, whose queries name only metrics the
operator really exports (flowpod_operator._runtime.metrics). Hermetic: no cluster."""

from __future__ import annotations

import json
import re

from delivery import _helm
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.metrics import Metrics

OPERATOR = "rel-flowpod-operator"


def test_default_values_give_a_metrics_service_and_the_dashboard_but_no_service_monitor():
    rendered = _helm.template()
    service = rendered.one("Service", f"{OPERATOR}-metrics", "flowpod-system")
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("metrics", 8080, "health")
    deployment = rendered.one("Deployment", OPERATOR)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert rendered.of_kind("ServiceMonitor") == []
    dashboard = rendered.one("ConfigMap", "rel-flowpod-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["flowpod.json"])["uid"] == "flowpod-operator"


def test_service_monitor_when_asked_scrapes_the_metrics_port():
    rendered = _helm.template("metrics.serviceMonitor.enabled=true",
                              "metrics.serviceMonitor.labels.release=kube-prometheus",
                              "metrics.serviceMonitor.interval=15s", "operator.healthPort=9090")
    monitor = rendered.one("ServiceMonitor", OPERATOR, "flowpod-system")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics",
                                              "interval": "15s"}]
    service = rendered.one("Service", f"{OPERATOR}-metrics")
    assert service["spec"]["ports"][0]["port"] == 9090
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()


def test_metrics_delivery_can_be_turned_off_and_typos_are_refused():
    rendered = _helm.template("metrics.service.enabled=false", "metrics.dashboard.enabled=false")
    assert rendered.of_kind("Service") == [] and rendered.of_kind("ConfigMap") == []
    out = _helm.run("template", "rel", str(_helm.CHART), "--kube-version", _helm.KUBE_VERSION,
                    "--set", "metrics.serviceMonitor.interval=often", check=False)
    assert out.returncode != 0 and "/metrics/serviceMonitor/interval" in out.stderr


def test_dashboard_panels_query_only_metrics_the_operator_exports():
    dashboard = json.loads((_helm.CHART / "dashboards" / "flowpod.json").read_text())
    titles = [panel["title"] for panel in dashboard["panels"]]
    for wanted in ("Runs by state", "Crashes by reason", "Submission latency", "Run duration"):
        assert any(title.startswith(wanted) for title in titles), titles
    exported = {family.name for family in Metrics(Index().flowrun_items).registry.collect()}
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\b(flowpod_[a-z_]+)", target["expr"])}
    bare = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in queried}
    assert bare <= exported, bare - exported
    submission = next(p for p in dashboard["panels"] if p["title"].startswith("Submission"))
    assert {t["legendFormat"] for t in submission["targets"]} == {"p50", "p99"}
