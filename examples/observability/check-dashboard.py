#!/usr/bin/python3
"""check-dashboard.py - evaluates every PromQL expression of a Grafana
dashboard through a real Prometheus's HTTP API, so that a dashboard is known
to work against what that Prometheus scrapes (tern's or Envoy's
/stats/prometheus).

    check-dashboard.py --prometheus http://127.0.0.1:9090 \
        [--exposition FILE] [--optional METRIC ...] [--rate-interval 1m] \
        grafana-dashboard.json

Checks, each printed as "ok - ..." or "not ok - ...":
  - the dashboard imports cleanly: schemaVersion, an __inputs entry for
    DS_PROMETHEUS, every panel, target and variable on "${DS_PROMETHEUS}",
    distinct panel ids, every panel with at least one target;
  - with --exposition (the text of /stats/prometheus): every metric name the
    dashboard uses is a sample name in it, except the --optional ones;
  - every query variable label_values(METRIC, LABEL) has values (evaluated as
    "count by (LABEL) (METRIC)");
  - every target's expression, with Grafana's variables replaced ($__rate_interval
    by --rate-interval, a query variable by all the values it found, as
    "v1|v2", or its allValue when it found none), evaluates without
    error to a vector whose values are numbers (not NaN), which is not empty,
    and whose series carry the labels named in the target's legendFormat.
    An expression that uses an --optional metric may be empty (a panel that
    says "No data" until that metric exists).

Exit status: 0 when every check passed, 1 otherwise, 2 on bad usage.
Standard library only.
"""

import argparse
import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

DS = "${DS_PROMETHEUS}"
METRIC_RE = re.compile(r"\b(envoy_[a-zA-Z0-9_]+)\b")
LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$")
# Grafana's built-in interval variables, as $name or ${name}.
BUILTINS = ("__rate_interval", "__interval", "__range")
# What is not a metric name: label matchers, grouping and matching label lists.
NOT_METRICS_RE = re.compile(r"\{[^}]*\}|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metrics_in(expr):
    return set(METRIC_RE.findall(NOT_METRICS_RE.sub(" ", expr or "")))

passed = 0
failed = 0


def ok(name):
    global passed
    passed += 1
    print("ok - " + name)


def bad(name, why):
    global failed
    failed += 1
    print("not ok - %s: %s" % (name, why))


def walk_panels(panels):
    for p in panels or []:
        yield p
        # Rows (collapsed ones keep their panels inside).
        yield from walk_panels(p.get("panels"))


def ds_uid(obj):
    ds = obj.get("datasource")
    if isinstance(ds, dict):
        return ds.get("uid")
    return ds


def query(prom, expr):
    url = prom.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        body = e.read()
    except (urllib.error.URLError, OSError) as e:
        return None, "Prometheus at %s does not answer: %s" % (prom, e)
    try:
        d = json.loads(body)
    except ValueError:
        return None, "not JSON: %r" % body[:200]
    if d.get("status") != "success":
        return None, "%s: %s" % (d.get("errorType"), d.get("error"))
    return d["data"], None


def substitute(expr, variables, rate_interval):
    for b in BUILTINS:
        val = rate_interval if b != "__range" else "5m"
        expr = expr.replace("${%s}" % b, val).replace("$" + b, val)
    # Longest names first, so that $cluster does not eat $cluster_name.
    for name in sorted(variables, key=len, reverse=True):
        v = variables[name]
        expr = expr.replace("${%s}" % name, v).replace("[[%s]]" % name, v).replace("$" + name, v)
    return expr


def exposition_names(text):
    names = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
        if m:
            names.add(m.group(1))
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", required=True, help="base URL of Prometheus")
    ap.add_argument("--exposition", help="a file holding the scraped /stats/prometheus text")
    ap.add_argument("--optional", action="append", default=[],
                    help="a metric that may be absent (its expressions may be empty); repeatable")
    ap.add_argument("--rate-interval", default="1m", help="value of $__rate_interval (default 1m)")
    ap.add_argument("dashboard")
    a = ap.parse_args()

    try:
        with open(a.dashboard) as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        print("check-dashboard.py: %s: %s" % (a.dashboard, e), file=sys.stderr)
        return 2
    ok("%s is JSON" % a.dashboard)

    # ---- importable ----------------------------------------------------------
    sv = dash.get("schemaVersion")
    if isinstance(sv, int) and sv >= 36:
        ok("schemaVersion %d" % sv)
    else:
        bad("schemaVersion", "expected a number >= 36, got %r" % sv)
    inputs = [i for i in dash.get("__inputs", []) if i.get("name") == "DS_PROMETHEUS"]
    if inputs and inputs[0].get("type") == "datasource" and inputs[0].get("pluginId") == "prometheus":
        ok("__inputs declares the DS_PROMETHEUS data source")
    else:
        bad("__inputs declares the DS_PROMETHEUS data source", "missing or not a prometheus datasource input")

    panels = list(walk_panels(dash.get("panels")))
    ids = [p.get("id") for p in panels]
    if len(ids) == len(set(ids)) and None not in ids:
        ok("%d panels with distinct ids" % len(panels))
    else:
        bad("distinct panel ids", "ids %r" % ids)

    targets = []  # (panel title, target)
    wrong_ds = []
    for p in panels:
        if p.get("type") == "row":
            continue
        ts = p.get("targets") or []
        if not ts:
            bad("panel '%s' has targets" % p.get("title"), "none")
        if ds_uid(p) != DS:
            wrong_ds.append("panel '%s': %r" % (p.get("title"), ds_uid(p)))
        for t in ts:
            if ds_uid(t) not in (DS, None):
                wrong_ds.append("panel '%s' target %s: %r" % (p.get("title"), t.get("refId"), ds_uid(t)))
            targets.append((p.get("title"), t))
    variables = {}
    var_queries = []
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            if ds_uid(v) != DS:
                wrong_ds.append("variable '%s': %r" % (v.get("name"), ds_uid(v)))
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            var_queries.append((v.get("name"), q))
            variables[v["name"]] = v.get("allValue") or ".*"
        elif v.get("type") in ("custom", "constant", "textbox", "interval"):
            cur = v.get("current", {}).get("value") or v.get("query", "")
            variables[v["name"]] = cur if isinstance(cur, str) else "|".join(cur)
    if wrong_ds:
        bad("every panel, target and variable uses ${DS_PROMETHEUS}", "; ".join(wrong_ds))
    else:
        ok("every panel, target and variable uses ${DS_PROMETHEUS}")

    # ---- metric names --------------------------------------------------------
    used = set()
    for _, t in targets:
        used |= metrics_in(t.get("expr", ""))
    for _, q in var_queries:
        used |= metrics_in(LABEL_VALUES_RE.sub(r"\1", q or ""))
    optional = set(a.optional)
    unknown_optional = optional - used
    if unknown_optional:
        bad("--optional metrics are used by the dashboard", "not used: %s" % ", ".join(sorted(unknown_optional)))
    if a.exposition:
        with open(a.exposition) as f:
            names = exposition_names(f.read())
        for m in sorted(used):
            if m in names:
                ok("exported: %s" % m)
            elif m in optional:
                ok("not exported yet (optional): %s" % m)
            else:
                bad("exported: %s" % m, "no such sample name in %s" % a.exposition)

    # ---- variables -----------------------------------------------------------
    for name, q in var_queries:
        m = LABEL_VALUES_RE.match(q or "")
        if not m:
            bad("variable $%s" % name, "query %r is not label_values(METRIC, LABEL)" % q)
            continue
        metric, label = m.groups()
        expr = "count by (%s) (%s)" % (label, metric)
        data, err = query(a.prometheus, expr)
        if err:
            bad("variable $%s: %s" % (name, q), err)
            continue
        vals = sorted(r["metric"].get(label, "") for r in data["result"])
        vals = [x for x in vals if x]
        if vals:
            ok("variable $%s: %s -> %s" % (name, q, ", ".join(vals)))
            # As Grafana sends it when these values are picked (rather than
            # the allValue ".*", which also matches series without the label,
            # so that a misspelt label name in a filter would go unnoticed).
            variables[name] = "|".join(re.escape(x) for x in vals)
        else:
            bad("variable $%s: %s" % (name, q), "no values")

    # ---- expressions ---------------------------------------------------------
    for title, t in targets:
        raw = t.get("expr", "")
        name = "panel '%s' %s: %s" % (title, t.get("refId"), raw)
        if not raw.strip():
            bad(name, "empty expression")
            continue
        expr = substitute(raw, variables, a.rate_interval)
        if "$" in expr:
            bad(name, "a variable the dashboard does not define is left: %s" % expr)
            continue
        data, err = query(a.prometheus, expr)
        if err:
            bad(name, err)
            continue
        if data.get("resultType") not in ("vector", "scalar"):
            bad(name, "result type %s, expected an instant vector" % data.get("resultType"))
            continue
        res = data["result"] if data["resultType"] == "vector" else [{"metric": {}, "value": data["result"]}]
        uses_optional = metrics_in(raw) & optional
        if not res:
            if uses_optional:
                ok("%s -> empty (allowed: uses %s)" % (name, ", ".join(sorted(uses_optional))))
            else:
                bad(name, "empty result (no series) for %s" % expr)
            continue
        values = []
        for r in res:
            try:
                values.append(float(r["value"][1]))
            except (KeyError, IndexError, ValueError):
                values.append(float("nan"))
        if any(math.isnan(x) for x in values):
            bad(name, "NaN in the result: %s" % json.dumps(res)[:300])
            continue
        legend_labels = re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", t.get("legendFormat", ""))
        missing = [lab for lab in legend_labels if any(lab not in r["metric"] for r in res)]
        if missing:
            bad(name, "legendFormat names label(s) %s that the result does not carry: %s"
                % (", ".join(missing), json.dumps(res)[:300]))
            continue
        shown = ", ".join(
            "%s=%g" % (",".join("%s=%s" % kv for kv in sorted(r["metric"].items())) or "{}", x)
            for r, x in zip(res, values))
        ok("%s -> %s" % (name, shown))

    print("check-dashboard: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
