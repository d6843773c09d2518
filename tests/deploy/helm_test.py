#!/usr/bin/env python3
"""The Helm chart (helm/wsdrain) rendered with Helm's own engine (Go text/template + sprig,
from Debian's packages, by tests/deploy/helm_render), for a classic and a native sidecar, and
the kustomize example (deploy/kubernetes): the pod must drain before it dies.

usage: helm_test.py SOURCE_DIR WSDRAIN_BINARY
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

SOURCE, WSDRAIN = sys.argv[1:3]
CHART = f"{SOURCE}/helm/wsdrain"
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))


def seconds(duration):
    d = str(duration)
    for suffix, factor in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if d.endswith(suffix):
            return float(d[: -len(suffix)]) * factor
    return float(d)


def by_kind(docs, kind):
    return [d for d in docs if d and d.get("kind") == kind]


def check_pod(label, docs, native):
    """The invariants of SPEC section 7 on a rendered Deployment and its ConfigMap."""
    deployment = by_kind(docs, "Deployment")[0]
    spec = deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec.get("containers", [])}
    inits = {c["name"]: c for c in spec.get("initContainers", [])}
    wsdrain = inits.get("wsdrain") if native else containers.get("wsdrain")
    backend = containers.get("backend")
    check(f"{label}: wsdrain is a {'native' if native else 'classic'} sidecar", wsdrain is not None and
          ("wsdrain" not in containers if native else "wsdrain" not in inits), json.dumps(list(containers)))
    if native:
        check(f"{label}: the native sidecar restarts always", wsdrain.get("restartPolicy") == "Always")
    config_map = [c for c in by_kind(docs, "ConfigMap") if "wsdrain.yaml" in c.get("data", {})][0]
    config = yaml.safe_load(config_map["data"]["wsdrain.yaml"])
    drain_timeout = seconds(config["drain"]["timeout"])

    hook = wsdrain["lifecycle"]["preStop"]["exec"]["command"]
    check(f"{label}: wsdrain's preStop is `wsdrain drain --wait`", hook[:3] == ["wsdrain", "drain", "--wait"], hook)
    wait = backend["lifecycle"]["preStop"]["httpGet"]
    admin_port = int(config["admin"]["listen"].rsplit(":", 1)[1])
    check(f"{label}: the backend's preStop blocks on GET /drain/wait",
          wait["path"].startswith("/drain/wait") and wait["port"] in (admin_port, "admin"), wait)
    check(f"{label}: readiness probes /readyz", wsdrain["readinessProbe"]["httpGet"]["path"] == "/readyz")
    check(f"{label}: liveness probes /healthz", wsdrain["livenessProbe"]["httpGet"]["path"] == "/healthz")
    grace = spec["terminationGracePeriodSeconds"]
    check(f"{label}: grace period {grace}s > drain.timeout {drain_timeout}s", grace > drain_timeout)
    check(f"{label}: admin listens on the pod network for probes",
          config["admin"]["listen"].startswith("0.0.0.0:"), config["admin"]["listen"])
    ws_port = [p for p in wsdrain["ports"] if p["name"] == "ws"][0]["containerPort"]
    service = by_kind(docs, "Service")[0]
    targets = [p["targetPort"] for p in service["spec"]["ports"]]
    check(f"{label}: the Service targets wsdrain's listener", "ws" in targets or ws_port in targets, targets)
    check(f"{label}: wsdrain reads the ConfigMap's file",
          "/etc/wsdrain/wsdrain.yaml" in wsdrain["args"] and any(v["mountPath"] == "/etc/wsdrain"
                                                                  for v in wsdrain["volumeMounts"]))
    for name, c in (("wsdrain", wsdrain), ("backend", backend)):
        sc = c.get("securityContext", {})
        check(f"{label}: {name} has a read-only root filesystem and no privilege escalation",
              sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False, sc)
    check(f"{label}: the pod runs as non-root", spec.get("securityContext", {}).get("runAsNonRoot") is True)

    # The config the wsdrain container will read is one wsdrain accepts.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(config_map["data"]["wsdrain.yaml"])
    out = subprocess.run([WSDRAIN, "check", "--config", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    check(f"{label}: `wsdrain check` accepts the rendered config", out.returncode == 0 and out.stdout == "config OK\n",
          out.stderr)
    return config


def main():
    work = tempfile.mkdtemp(prefix="wsdrain-helm-")
    try:
        env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOCACHE=f"{work}/gocache",
                   GOFLAGS="-buildvcs=false")
        subprocess.run(["go", "build", "-o", f"{work}/helm_render", "main.go"], check=True, env=env,
                       cwd=f"{SOURCE}/tests/deploy/helm_render")

        def render(values=None):
            args = [f"{work}/helm_render", CHART, "demo"]
            if values:
                path = f"{work}/values-{len(os.listdir(work))}.yaml"
                with open(path, "w") as f:
                    yaml.safe_dump(values, f)
                args.append(path)
            out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
            return list(yaml.safe_load_all(out))

        classic = render()
        check_pod("helm classic", classic, native=False)
        check("helm classic: no monitors or dashboard unless asked",
              not by_kind(classic, "ServiceMonitor") and not by_kind(classic, "PodMonitor"))

        native = render({"wsdrain": {"sidecarMode": "native"},
                         "config": {"drain": {"timeout": "1.5m", "spread": "30s"}},
                         "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True},
                                     "dashboard": {"enabled": True}}})
        config = check_pod("helm native", native, native=True)
        grace = by_kind(native, "Deployment")[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        check("helm: the grace period follows drain.timeout (1.5m + 15s)", grace == 105, grace)
        check("helm: values override the config file", config["drain"]["spread"] == "30s")
        for kind in ("ServiceMonitor", "PodMonitor"):
            m = by_kind(native, kind)
            endpoints = (m[0]["spec"].get("endpoints") or m[0]["spec"].get("podMetricsEndpoints")) if m else []
            check(f"helm: a {kind} scrapes /metrics on the admin port",
                  bool(m) and endpoints[0]["port"] == "admin" and endpoints[0]["path"] == "/metrics")
        dashboards = [c for c in by_kind(native, "ConfigMap") if "wsdrain.json" in c.get("data", {})]
        shipped = json.load(open(f"{SOURCE}/deploy/grafana/wsdrain.json"))
        check("helm: the dashboard ConfigMap is labelled for Grafana's sidecar and holds deploy/grafana/wsdrain.json",
              bool(dashboards) and dashboards[0]["metadata"]["labels"].get("grafana_dashboard") == "1"
              and json.loads(dashboards[0]["data"]["wsdrain.json"]) == shipped)

        tls = render({"wsdrain": {"tlsSecret": "wsdrain-tls"},
                      "config": {"tls": {"cert": "/etc/wsdrain/tls/tls.crt", "key": "/etc/wsdrain/tls/tls.key"}}})
        pod = by_kind(tls, "Deployment")[0]["spec"]["template"]["spec"]
        wsdrain = [c for c in pod["containers"] if c["name"] == "wsdrain"][0]
        check("helm: wsdrain.tlsSecret mounts the Secret where config.tls points",
              {"name": "tls", "secret": {"secretName": "wsdrain-tls"}} in pod["volumes"]
              and {"name": "tls", "mountPath": "/etc/wsdrain/tls", "readOnly": True} in wsdrain["volumeMounts"])
        check("helm: without wsdrain.tlsSecret nothing is mounted",
              all(v["name"] != "tls" for v in by_kind(classic, "Deployment")[0]["spec"]["template"]["spec"]["volumes"]))

        # Values for every key of the config file (SPEC section 5; tls is commented out in both).
        def keys(d, prefix=""):
            out = set()
            for k, v in d.items():
                out.add(prefix + k)
                if isinstance(v, dict):
                    out |= keys(v, prefix + k + ".")
            return out
        default_config = yaml.safe_load(open(f"{SOURCE}/config/wsdrain.yaml"))
        chart_values = yaml.safe_load(open(f"{CHART}/values.yaml"))["config"]
        missing = keys(default_config) - keys(chart_values)
        check("helm: values.yaml has every key of config/wsdrain.yaml", not missing, sorted(missing))

        # The kustomize example.
        kustomize_dir = f"{SOURCE}/deploy/kubernetes"
        kubectl = shutil.which("kubectl")
        if kubectl:
            out = subprocess.run([kubectl, "kustomize", kustomize_dir], capture_output=True, text=True, check=True)
            docs = list(yaml.safe_load_all(out.stdout))
        else:
            print("skip kubectl kustomize: kubectl is not installed (Debian does not package it); "
                  "checking the files themselves")
            docs = []
            kustomization = yaml.safe_load(open(f"{kustomize_dir}/kustomization.yaml"))
            for r in kustomization["resources"]:
                docs += list(yaml.safe_load_all(open(f"{kustomize_dir}/{r}")))
            for g in kustomization.get("configMapGenerator", []):
                data = {os.path.basename(f): open(f"{kustomize_dir}/{f}").read() for f in g["files"]}
                docs.append({"kind": "ConfigMap", "metadata": {"name": g["name"]}, "data": data})
        check_pod("kustomize", docs, native=False)
        print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
        return 0 if all(results) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
