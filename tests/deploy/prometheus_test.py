#!/usr/bin/env python3
"""A real Prometheus server (Debian's) scrapes a running wsdrain while live sessions go through a
drain. Then every query of deploy/grafana/wsdrain.json and every alert expression of
deploy/prometheus/wsdrain-alerts.yaml is evaluated through Prometheus's HTTP API: none may
error, and each must return data.

To make every alert expression return data, the run has a client that never answers its Close
(forced closes) and an endpoint that refuses connections (endpoint down). The overrun alert's
30 s threshold is lowered to 0 s, and it is evaluated at a moment during the drain.

usage: prometheus_test.py WSDRAIN DEMO_BACKEND SOURCE_DIR
"""
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import websockets

WSDRAIN, BACKEND, SOURCE = sys.argv[1:4]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, method="GET", timeout=30):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_until(check, timeout, what):
    until = time.time() + timeout
    while time.time() < until:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def silent_client(port):
    """Upgrades, then never reads or answers: the drain must force it."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /silent HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


async def chatty_client(port, stop):
    async with websockets.connect(f"ws://127.0.0.1:{port}/chat") as ws:
        try:
            while not stop.is_set():
                await ws.send("hello")
                await ws.recv()
                await asyncio.sleep(0.1)
        except websockets.ConnectionClosed:
            pass


def main():
    work = tempfile.mkdtemp(prefix="wsdrain-prometheus-")
    procs = []
    try:
        backend = subprocess.Popen([BACKEND, "--port", "0"], stdout=subprocess.PIPE, text=True)
        procs.append(backend)
        backend_port = int(backend.stdout.readline().split()[-1])
        port, admin, dead, prom_port = free_port(), free_port(), free_port(), free_port()
        with open(f"{work}/wsdrain.yaml", "w") as f:
            f.write(f"""listen: 127.0.0.1:{port}
admin: {{listen: 127.0.0.1:{admin}}}
threads: 2
upstreams:
  - {{name: app, endpoints: [127.0.0.1:{backend_port}]}}
  - {{name: dead, endpoints: [127.0.0.1:{dead}]}}
routes:
  - {{path_prefix: /, upstream: app}}
  - {{path_prefix: /dead, upstream: dead}}
drain: {{spread: 3s, close_timeout: 1s, timeout: 15s}}
log: {{level: warn}}
""")
        procs.append(subprocess.Popen([WSDRAIN, "--config", f"{work}/wsdrain.yaml"]))
        wait_until(lambda: http(f"http://127.0.0.1:{admin}/readyz")[0] == 200, 10, "wsdrain")

        rules = open(f"{SOURCE}/deploy/prometheus/wsdrain-alerts.yaml").read()
        rules = rules.replace("wsdrain_drain_duration_seconds > 30", "wsdrain_drain_duration_seconds > 0")
        open(f"{work}/rules.yaml", "w").write(rules)
        with open(f"{work}/prometheus.yaml", "w") as f:
            f.write(f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [rules.yaml]
scrape_configs:
  - job_name: wsdrain
    static_configs: [{{targets: ["127.0.0.1:{admin}"]}}]
""")
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={work}/prometheus.yaml", f"--storage.tsdb.path={work}/data",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        api = f"http://127.0.0.1:{prom_port}"
        wait_until(lambda: http(f"{api}/-/ready")[0] == 200, 30, "Prometheus")
        # Ready is not scraping: targets are applied on a throttled reload. Wait for a sample.
        wait_until(lambda: '"result":[{' in http(f"{api}/api/v1/query?query=up")[1].replace(" ", ""), 30,
                   "the first scrape")

        # Traffic: chatty sessions, a silent one, and three failed connections to the dead endpoint.
        silent = silent_client(port)
        for _ in range(3):
            assert http(f"http://127.0.0.1:{port}/dead/x")[0] == 502
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        clients = [loop.create_task(chatty_client(port, stop)) for _ in range(10)]
        loop.run_until_complete(asyncio.sleep(4))  # a few scrapes while serving

        status, body = http(f"http://127.0.0.1:{admin}/drain", "POST")
        assert status == 202, (status, body)
        loop.run_until_complete(asyncio.sleep(1.5))
        during_drain = time.time()
        loop.run_until_complete(asyncio.wait_for(asyncio.gather(*clients), 20))
        status, body = http(f"http://127.0.0.1:{admin}/drain/wait?timeout=20")
        assert status == 200, (status, body)
        print("drain:", body.strip())
        time.sleep(4)  # scrapes after the drain
        silent.close()

        def query(expr, at=None):
            params = {"query": expr}
            if at:
                params["time"] = f"{at:.3f}"
            status, text = http(f"{api}/api/v1/query?" + urllib.parse.urlencode(params))
            reply = json.loads(text)
            return reply.get("status"), reply.get("error"), reply.get("data", {}).get("result", [])

        def grafana(expr):
            return (expr.replace("$__rate_interval", "15s").replace("$job", ".+").replace("$instance", ".+"))

        dashboard = json.load(open(f"{SOURCE}/deploy/grafana/wsdrain.json"))
        checks = [(f"dashboard: {p['title']} [{t['refId']}]", grafana(t["expr"]), None)
                  for p in dashboard["panels"] for t in p["targets"]]
        checks += [(f"dashboard annotation: {a['name']}", grafana(a["expr"]), None)
                   for a in dashboard["annotations"]["list"]]
        for rule in re.finditer(r"- alert: (\w+)\n\s+(?:#.*\n\s+)*expr: (.+)", rules):
            at = during_drain if rule.group(1) == "WsdrainDrainOverrun" else None
            checks.append((f"alert: {rule.group(1)}", rule.group(2), at))
        assert any(c[0].startswith("alert") for c in checks) and len(checks) > 15, checks

        if os.environ.get("WSDRAIN_TEST_DEBUG"):
            for e in ["up[30s]", "wsdrain_drain_started_timestamp_seconds[30s]",
                      'wsdrain_sessions_closed_total{reason="drain_forced"}[30s]', "wsdrain_state[30s]"]:
                print(e, json.dumps(query(e)[2])[:900])
        failed = 0
        for name, expr, at in checks:
            status, error, result = query(expr, at)
            ok = status == "success" and len(result) > 0
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name}: {len(result)} series" + (f" ({error})" if error else ""))
            if not ok:
                print(f"     {expr}")
        print(f"{len(checks) - failed} passed, {failed} failed")
        return 1 if failed else 0
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
