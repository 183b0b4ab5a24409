"""Every metric the alert rules and the Grafana dashboard query is one the fleet exports.

The names come from the registries the code builds: a worker's (WorkerMetrics), the batch API's
(ApiMetrics) and the file `recalls reconcile --metrics-file` writes.  A counter is queried as
``<name>_total``, a histogram as ``<name>_bucket``, ``_count`` or ``_sum``.  No metric of another
exporter (RabbitMQ's, Redis's) is used; one would have to be listed here with its reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from recalls.cli.reconcile import _write_metrics
from recalls.producers.batch_api.ops import ApiMetrics
from recalls.producers.reconcile import Reconciliation
from recalls.shared.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
# PromQL words that look like metric names, and the modifiers whose parentheses hold label names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def series_names(families: Any) -> set[str]:
    names = set()
    for family in families:
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def exported(tmp_path: Path) -> set[str]:
    registries: list[CollectorRegistry] = [WorkerMetrics().registry, ApiMetrics().registry]
    names = set().union(*(series_names(registry.collect()) for registry in registries))
    textfile = tmp_path / "recalls.prom"
    _write_metrics(textfile, Reconciliation("batch-1"))
    return names | series_names(text_string_to_metric_families(textfile.read_text()))


def metric_names(expression: str) -> set[str]:
    """The metric names ``expression`` selects (not its functions, keywords, labels or strings)."""
    bare = re.sub(r'"[^"]*"', "", expression)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", bare)
    bare = LABEL_LISTS.sub("", bare)
    found = re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", bare)
    return {m[1] for m in found if m[2] is None and m[1] not in KEYWORDS}


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "recalls.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


@pytest.mark.parametrize(
    "expressions", [rule_expressions, dashboard_expressions], ids=["rules.yml", "recalls.json"]
)
def test_every_metric_queried_is_exported(expressions: Any, tmp_path: Path) -> None:
    known = exported(tmp_path)
    used = set().union(*(metric_names(expression) for expression in expressions()))
    assert used, "no metric found: the expressions were not read"
    assert used - known == set()


def test_a_misspelt_metric_is_caught(tmp_path: Path) -> None:
    expression = 'sum by (verb) (rate(recalls_dvsa_request_total{status="429"}[5m])) > on () vector(0)'
    assert metric_names(expression) == {"recalls_dvsa_request_total"}
    assert metric_names(expression) - exported(tmp_path) == {"recalls_dvsa_request_total"}


def test_the_dashboard_shows_what_operators_look_for() -> None:
    expressions = " ".join(dashboard_expressions())
    for name in (
        "recalls_dvsa_requests_total",
        "recalls_dvsa_request_duration_seconds_bucket",
        "recalls_queue_messages",
        "recalls_retries_total",
        "recalls_dead_letters_total",
        "recalls_token_expiry_timestamp_seconds",
        "recalls_drift_total",
    ):
        assert name in expressions, name
    assert "vector(25)" in expressions  # the DVSA limit drawn beside the calls per verb
