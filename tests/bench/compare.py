#!/usr/bin/python3
"""wsdrain against nginx and HAProxy, side by side, in one run (issue 6). Not a test.

Each proxy runs with one worker thread pinned to CPU 0; the load generator and the echo
backend run on CPU 1. For each scenario and proxy the proxy's CPU time is read from
/proc/PID/stat before and after, its memory from /proc/PID/status. Every scenario runs
against: direct (no proxy), nginx, HAProxy in http mode, HAProxy in tcp mode (the byte-relay
floor) and wsdrain, in an order that rotates from run to run.

  tests/bench/compare.py --build build [--runs 5] [--seconds 10] [--out FILE.json]

Prints a table of figures and of wsdrain's ratio to the better of nginx and HAProxy http.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")
PEERS = ["nginx", "haproxy_http", "haproxy_tcp", "wsdrain"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_times(pid):
    """The process's (user, system) CPU seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK  # utime, stime


def cpu_seconds(pid):
    return sum(cpu_times(pid))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def ensure_packages():
    missing = [p for p, b in (("nginx", "/usr/sbin/nginx"), ("haproxy", "/usr/sbin/haproxy")) if not os.path.exists(b)]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing, check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


class Proxy:
    """One proxy process, pinned to CPU 0, listening on self.port, relaying to the backend."""

    def __init__(self, kind, backend_port, build, work, binary=None):
        self.kind, self.port = kind, free_port()
        d = os.path.join(work, kind)
        os.makedirs(d, exist_ok=True)
        pin = ["taskset", "-c", "0"]
        if kind == "nginx":
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w") as f:
                f.write(f"""daemon off; master_process off; worker_processes 1; worker_rlimit_nofile 20000;
pid {d}/nginx.pid; error_log stderr error;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  upstream app {{ server 127.0.0.1:{backend_port}; }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 1h; proxy_send_timeout 1h;
    }}
  }}
}}
""")
            cmd = pin + ["/usr/sbin/nginx", "-p", d, "-c", conf, "-e", "stderr"]
        elif kind.startswith("haproxy"):
            mode = "http" if kind == "haproxy_http" else "tcp"
            conf = os.path.join(d, "haproxy.cfg")
            with open(conf, "w") as f:
                f.write(f"""global
  nbthread 1
  maxconn 9500
defaults
  mode {mode}
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
frontend fe
  bind 127.0.0.1:{self.port}
  default_backend be
backend be
  server s1 127.0.0.1:{backend_port}
""")
            cmd = pin + ["/usr/sbin/haproxy", "-db", "-f", conf]
        else:
            conf = os.path.join(d, "wsdrain.yaml")
            with open(conf, "w") as f:
                f.write(f"""listen: 127.0.0.1:{self.port}
threads: 1
admin: {{listen: 127.0.0.1:{free_port()}}}
upstreams: [{{name: app, endpoints: [127.0.0.1:{backend_port}]}}]
log: {{level: warn}}
""")
            cmd = pin + [binary or os.path.join(build, "proxy/app/wsdrain"), "--config", conf]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "stderr"), "w"))
        wait_port(self.port)

    @property
    def pid(self):
        return self.process.pid  # taskset execs the proxy: same PID

    def stop(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def loadgen(build, mode, port, **kw):
    cmd = ["taskset", "-c", "1", os.path.join(build, "tests/bench/wsdrain_loadgen"), mode, "--port", str(port)]
    for k, v in kw.items():
        cmd += [f"--{k}", str(v)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if out.returncode != 0 or result.get("error") or result.get("errors"):
        raise RuntimeError(f"loadgen {mode} failed: {out.stdout} {out.stderr}")
    return result


def measure(build, proxy, port, seconds):
    """Every scenario against `port`; proxy CPU and memory figures when a proxy is given."""
    figures = {}

    def cpu_during(run, key, per):
        """Runs `run`; records the proxy's CPU per unit (`per` of the result) under `key`, and
        the user-space part of it under `key` with `_user` appended."""
        before = cpu_times(proxy.pid) if proxy else (0, 0)
        result = run()
        if proxy:
            after = cpu_times(proxy.pid)
            user, system = after[0] - before[0], after[1] - before[1]
            figures[key] = (user + system) / result[per] * 1e6
            figures[key + "_user"] = user / result[per] * 1e6
        return result

    r = cpu_during(lambda: loadgen(build, "pingpong", port, sessions=100, size=64, seconds=seconds),
                   "pingpong_64B_cpu_us_per_msg", "messages")
    figures["pingpong_64B_msgs_per_s"] = r["messages_per_second"]

    r = cpu_during(lambda: loadgen(build, "stream", port, sessions=100, size=1024, inflight=16, seconds=seconds),
                   "stream_1KiB_cpu_us_per_msg", "messages")
    figures["stream_1KiB_msgs_per_s"] = r["messages_per_second"]

    r = cpu_during(lambda: loadgen(build, "upgrades", port, sessions=10, seconds=seconds), "upgrade_cpu_us", "upgrades")
    figures["upgrades_per_s"] = r["upgrades"] / r["seconds"]

    r = loadgen(build, "latency", port, sessions=1000, rate=20000, size=64, seconds=seconds, sources=4)
    figures["latency_p50_us"], figures["latency_p99_us"] = r["p50_us"], r["p99_us"]

    if proxy:  # memory per idle session: RSS delta over 9,000 open sessions
        time.sleep(1)
        before = rss_kib(proxy.pid)
        idle = subprocess.Popen(["taskset", "-c", "1", os.path.join(build, "tests/bench/wsdrain_loadgen"), "idle",
                                 "--port", str(port), "--sessions", "9000", "--sources", "8"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = json.loads(idle.stdout.readline())
        if line.get("open") != 9000:
            raise RuntimeError(f"idle sessions: {line}")
        time.sleep(2)
        figures["idle_kib_per_session"] = (rss_kib(proxy.pid) - before) / 9000
        idle.stdin.close()
        idle.wait()
    return figures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--out", default="")
    ap.add_argument("--candidate", default="",
                    help="another wsdrain binary (e.g. an earlier commit's build) measured in the same run, as 'candidate'")
    ap.add_argument("--only", default="", help="comma-separated subset of direct,nginx,haproxy_http,haproxy_tcp,wsdrain")
    ap.add_argument("--tables-from", default="", help="print the tables of a saved --out report; measure nothing")
    args = ap.parse_args()
    if args.tables_from:
        with open(args.tables_from) as f:
            print_tables(json.load(f))
        return
    build = os.path.abspath(args.build)
    ensure_packages()
    work = tempfile.mkdtemp(prefix="wsdrain-bench-")
    backend = subprocess.Popen(["taskset", "-c", "1", os.path.join(build, "tests/tools/demo_backend")],
                               stdout=subprocess.PIPE, text=True)
    backend_port = int(backend.stdout.readline().split()[-1])
    runs = []
    try:
        for run in range(args.runs):
            order = ["direct"] + PEERS + (["candidate"] if args.candidate else [])
            if args.only:
                order = [k for k in order if k in args.only.split(",") or k == "candidate"]
            shift = run % len(order)
            order = order[shift:] + order[:shift]
            results = {}
            for kind in order:
                print(f"run {run + 1}/{args.runs}: {kind}", file=sys.stderr, flush=True)
                if kind == "direct":
                    results[kind] = measure(build, None, backend_port, args.seconds)
                    continue
                if kind == "candidate":
                    proxy = Proxy("wsdrain", backend_port, build, os.path.join(work, "candidate"),
                                  os.path.abspath(args.candidate))
                else:
                    proxy = Proxy(kind, backend_port, build, work)
                try:
                    results[kind] = measure(build, proxy, proxy.port, args.seconds)
                finally:
                    proxy.stop()
            runs.append(results)
    finally:
        backend.send_signal(signal.SIGTERM)
        backend.wait()
        shutil.rmtree(work, ignore_errors=True)

    # Medians over the runs.
    median = {k: {f: statistics.median(r[k][f] for r in runs) for f in runs[0][k]} for k in runs[0]}
    report = {"machine": os.uname().machine, "cpus": os.cpu_count(), "runs": runs, "median": median,
              "seconds": args.seconds}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)

    print_tables(report)


ROWS = [("CPU per echoed 64 B message (µs), 100 sessions ping-pong", "pingpong_64B_cpu_us_per_msg"),
        ("  of it in user space (µs)", "pingpong_64B_cpu_us_per_msg_user"),
        ("CPU per echoed 1 KiB message (µs), 100 sessions x 16 in flight", "stream_1KiB_cpu_us_per_msg"),
        ("memory per idle session (KiB), 9,000 sessions", "idle_kib_per_session"),
        ("CPU per upgrade (µs)", "upgrade_cpu_us"),
        ("  of it in user space (µs)", "upgrade_cpu_us_user"),
        ("p50 latency (µs) at 20k msg/s over 1,000 sessions", "latency_p50_us"),
        ("p99 latency (µs) at 20k msg/s over 1,000 sessions", "latency_p99_us")]
NAMES = {"direct": "direct", "nginx": "nginx", "haproxy_http": "HAProxy http", "haproxy_tcp": "HAProxy tcp",
         "wsdrain": "wsdrain", "candidate": "candidate"}


def ratio_to_best(figures, key, kind, peers):
    """figures[kind][key] over the lowest of the peers' (lower is better for every figure)."""
    values = [figures[k][key] for k in peers if figures.get(k, {}).get(key) is not None]
    if not values or figures.get(kind, {}).get(key) is None or min(values) == 0:
        return float("nan")
    return figures[kind][key] / min(values)


def print_tables(report):
    """The medians with wsdrain's ratio to the best WebSocket peer, then that ratio run by run,
    which shows how much the machine's noise moves it."""
    median, runs = report["median"], report["runs"]
    columns = [k for k in ["direct"] + PEERS + ["candidate"] if k in median]
    peers = [k for k in ("nginx", "haproxy_http") if k in median]
    # Without peers (--only wsdrain --candidate) the ratios are to the candidate.
    base, base_name = (peers, "best of " + ", ".join(NAMES[k] for k in peers)) if peers else (["candidate"], "candidate")
    with_candidate = "candidate" in median and peers
    print("| figure | " + " | ".join(NAMES[k] for k in columns) + f" | wsdrain / {base_name}" +
          (" | candidate / best" if with_candidate else "") + " |")
    print("| --- " * (len(columns) + 2 + bool(with_candidate)) + "|")
    fmt = lambda v: "–" if v is None else f"{v:.1f}" if v >= 10 else f"{v:.2f}"
    for title, key in ROWS:
        cells = [median[k].get(key) for k in columns]
        print(f"| {title} | " + " | ".join(fmt(c) for c in cells) +
              f" | {ratio_to_best(median, key, 'wsdrain', base):.2f}" +
              (f" | {ratio_to_best(median, key, 'candidate', base):.2f}" if with_candidate else "") + " |")
    print()
    print(f"| wsdrain / {base_name}, run by run | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |")
    print("| --- " * (len(runs) + 1) + "|")
    for title, key in ROWS:
        print(f"| {title.strip()} | " + " | ".join(f"{ratio_to_best(r, key, 'wsdrain', base):.2f}" for r in runs) + " |")


if __name__ == "__main__":
    main()
