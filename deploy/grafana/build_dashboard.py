#!/usr/bin/env python3
"""Writes gatemesh.json, the Grafana dashboard of a gatemesh cluster.

Edit this file, not the JSON: `python3 deploy/grafana/build_dashboard.py`
rewrites deploy/grafana/gatemesh.json, and scripts/check-deploy fails when
the two differ. Import the JSON in Grafana (Dashboards > New > Import) and
pick the Prometheus data source that scrapes the nodes' /metrics.
"""

import json
import pathlib
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
JOBS = 'region=~"$region", pipeline=~"$pipeline"'
NODE = 'instance=~"$instance"'
RATE = "$__rate_interval"

panels = []
_next_id = [1]
_y = [0]


def row(title):
    panels.append({
        "type": "row", "title": title, "id": _next_id[0], "collapsed": False,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": _y[0]}, "panels": [],
    })
    _next_id[0] += 1
    _y[0] += 1


def series(title, targets, unit="short", x=0, w=12, h=8, stack=False, description=""):
    """A time series panel; targets are (expr, legend) pairs."""
    panels.append({
        "type": "timeseries",
        "title": title,
        "description": description,
        "id": _next_id[0],
        "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": _y[0]},
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {
                    "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if stack else 0,
                    "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                    "showPoints": "never",
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    })
    _next_id[0] += 1
    if x + w >= 24:
        _y[0] += h


def quantiles(metric, by, matchers):
    return [
        (f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{matchers}}}[{RATE}])))",
         f"p{int(q * 100)} {{{{{by}}}}}")
        for q in (0.5, 0.95, 0.99)
    ]


row("Traffic")
series("Job rate by region and pipeline",
       [(f"sum by (region, pipeline) (rate(gatemesh_jobs_total{{{JOBS}}}[{RATE}]))", "{{region}} {{pipeline}}")],
       unit="reqps", x=0, stack=True)
series("Job error rate (non-client failures)",
       [(f"sum by (region, pipeline) (rate(gatemesh_jobs_total{{{JOBS}, outcome!~\"success|ok|rejected|client_error\"}}[{RATE}]))"
         f" / sum by (region, pipeline) (rate(gatemesh_jobs_total{{{JOBS}}}[{RATE}]))", "{{region}} {{pipeline}}")],
       unit="percentunit", x=12,
       description="Share of jobs that ended in an upstream or gateway error. Client errors (4xx) are excluded.")
series("Job outcomes",
       [(f"sum by (outcome) (rate(gatemesh_jobs_total{{{JOBS}}}[{RATE}]))", "{{outcome}}")],
       unit="reqps", x=0, stack=True)
series("HTTP responses by route and status",
       [(f"sum by (route, status) (rate(gatemesh_http_requests_total{{{NODE}}}[{RATE}]))", "{{route}} {{status}}")],
       unit="reqps", x=12, stack=True)

row("Latency")
series("Job duration p50 / p95 / p99", quantiles("gatemesh_job_duration_seconds", "region", JOBS),
       unit="s", x=0, description="SLO: 99 % of jobs within 10 s (deploy/prometheus/rules.yml).")
series("Time to first byte p50 / p95 / p99", quantiles("gatemesh_job_first_byte_seconds", "region", JOBS),
       unit="s", x=12, description="Until the first byte of the answer (first SSE chunk for LLM streams).")
series("Jobs within the 10 s SLO",
       [(f"sum by (region) (rate(gatemesh_job_duration_seconds_bucket{{{JOBS}, le=~\"10|10\\\\.0\", outcome!~\"rejected|client_error\"}}[{RATE}]))"
         f" / sum by (region) (rate(gatemesh_job_duration_seconds_count{{{JOBS}, outcome!~\"rejected|client_error\"}}[{RATE}]))", "{{region}}")],
       unit="percentunit", x=0)
series("Routing latency ratio p50 / p95 / p99",
       quantiles("gatemesh_routing_latency_ratio", "instance", NODE), unit="short", x=12,
       description="Latency of the picked orchestrator over the best one observed (1 = routed to the fastest).")

row("Failover and retries")
series("Failovers by kind",
       [(f"sum by (kind) (rate(gatemesh_failovers_total{{{NODE}}}[{RATE}]))", "{{kind}}")],
       unit="ops", x=0, w=8, stack=True,
       description="in_region: another local orchestrator; cross_region: an orchestrator observed by another region; forwarded: the job went over the mesh to a node of another region.")
series("Retries by reason",
       [(f"sum by (reason) (rate(gatemesh_job_retries_total{{{NODE}}}[{RATE}]))", "{{reason}}")],
       unit="ops", x=8, w=8, stack=True)
series("Mesh forwards",
       [(f"sum by (direction, outcome) (rate(gatemesh_mesh_forwards_total{{{NODE}}}[{RATE}]))", "{{direction}} {{outcome}}")],
       unit="ops", x=16, w=8, stack=True)

row("Orchestrators")
series("Jobs per orchestrator",
       [(f"sum by (orchestrator) (rate(gatemesh_jobs_total{{{JOBS}}}[{RATE}]))", "{{orchestrator}}")],
       unit="reqps", x=0, w=8, stack=True)
series("Orchestrator error ratio",
       [(f"max by (orchestrator) (gatemesh_orchestrator_error_ratio{{{NODE}}})", "{{orchestrator}}")],
       unit="percentunit", x=8, w=8)
series("Ejections",
       [(f"sum by (orchestrator) (increase(gatemesh_orchestrator_ejections_total{{{NODE}}}[{RATE}]))", "{{orchestrator}}")],
       unit="short", x=16, w=8,
       description="Times an orchestrator was taken out of rotation after failures.")
series("Advertised capacity",
       [(f"max by (orchestrator, pipeline, model) (gatemesh_orchestrator_capacity{{{NODE}}})", "{{orchestrator}} {{pipeline}} {{model}}")],
       unit="short", x=0)
series("Capable orchestrators per offered pipeline",
       [(f"min by (pipeline) (gatemesh_pipeline_capable_orchestrators{{{NODE}}})", "{{pipeline}}")],
       unit="short", x=12, description="0 means every request for that pipeline fails (alert GatemeshNoCapableOrchestrator).")

row("Mesh")
series("Mesh members by state",
       [(f"gatemesh_mesh_members{{{NODE}}}", "{{instance}} {{state}}")], unit="short", x=0)
series("View staleness by origin",
       [(f"max by (instance, origin) (gatemesh_mesh_view_staleness_seconds{{{NODE}}})", "{{instance}} <- {{origin}}")],
       unit="s", x=12, description="Age of the newest record from each origin node; above 30 s alerts.")

row("Tenants")
series("Requests by tenant",
       [(f"sum by (tenant) (rate(gatemesh_tenant_requests_total{{{NODE}}}[{RATE}]))", "{{tenant}}")],
       unit="reqps", x=0, w=8, stack=True)
series("Usage of limits",
       [(f"max by (tenant, limit) (gatemesh_tenant_usage_ratio{{{NODE}}})", "{{tenant}} {{limit}}")],
       unit="percentunit", x=8, w=8)
series("Limit rejections",
       [(f"sum by (tenant, limit) (rate(gatemesh_tenant_limit_rejections_total{{{NODE}}}[{RATE}]))", "{{tenant}} {{limit}}")],
       unit="reqps", x=16, w=8, stack=True)


def variable(name, label, query, multi=True):
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": {"query": query, "refId": name}, "definition": query,
        "refresh": 2, "multi": multi, "includeAll": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1, "hide": 0, "options": [],
    }


dashboard = {
    "uid": "gatemesh-overview",
    "title": "gatemesh",
    "description": "gatemesh cluster: traffic, latency, failover, orchestrators, mesh, tenants.",
    "tags": ["gatemesh", "livepeer"],
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "graphTooltip": 1,
    "timezone": "browser",
    "time": {"from": "now-1h", "to": "now"},
    "refresh": "30s",
    "annotations": {"list": []},
    "links": [],
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "options": []},
        variable("region", "Region", "label_values(gatemesh_jobs_total, region)"),
        variable("pipeline", "Pipeline", "label_values(gatemesh_jobs_total, pipeline)"),
        variable("instance", "Node", "label_values(gatemesh_mesh_members, instance)"),
    ]},
    "panels": panels,
}

text = json.dumps(dashboard, indent=2, sort_keys=False) + "\n"
out = pathlib.Path(__file__).with_name("gatemesh.json")
if len(sys.argv) > 1 and sys.argv[1] == "--check":
    if out.read_text() != text:
        sys.exit(f"{out} is stale: run python3 {__file__}")
else:
    out.write_text(text)
