#!/usr/bin/python3
"""Soak benchmark for wsdrain (not in CI; see scripts/soak.sh).

Starts the demo echo backend and wsdrain as processes on loopback ports chosen at run time,
then for --minutes keeps --sessions WebSocket sessions churning: each connects (from one of
several 127.0.0.x source addresses), exchanges messages and checks their echoes, closes after
a random lifetime and reconnects. Every --drain-every seconds a partial drain
(POST /drain?fraction=F&spread=D) closes a share of them while the proxy goes on serving.
The proxy's RSS (/proc/PID/status VmRSS) and open descriptors (/proc/PID/fd) are sampled
every --sample-every seconds into samples.csv, plotted to soak.png with gnuplot, and
summarised in summary.json and summary.txt.

Client-visible errors: a failed upgrade, a session that ended without a clean close handshake
(no Close frame, or a code other than 1000 or the drain's), a missing or wrong echo, a drain
the admin API refused. Flat lines are the pass: the script exits 0 when there was no error,
the idle descriptor count after the run equals the one before it, and RSS at the end of the
run is within --max-rss-growth of RSS after the warm-up.

The processes it starts are ended by their PID.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import websockets

from compare import free_port, rss_kib  # tests/bench/compare.py

ROOT = Path(__file__).resolve().parents[2]


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def admin(port, method, path, timeout=10):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sessions_active(metrics_text):
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics_text.splitlines()
               if line.startswith("wsdrain_sessions_active{"))


class Soak:
    def __init__(self, args, proxy_pid, port, admin_port):
        self.args = args
        self.proxy_pid = proxy_pid
        self.uri = f"ws://127.0.0.1:{port}/soak"
        self.admin_port = admin_port
        self.stop = asyncio.Event()
        self.t0 = 0.0
        self.open = 0
        self.peak_open = 0
        self.counts = {"upgrades": 0, "messages": 0, "closed_by_client": 0, "closed_by_drain": 0,
                       "drains": 0, "drain_chosen": 0}
        self.errors = {}
        self.error_examples = []
        self.samples = []
        self.drains = []

    def error(self, kind, detail=""):
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.error_examples) < 20:
            self.error_examples.append(f"{time.monotonic() - self.t0:.1f}s {kind}: {detail}")

    def now(self):
        return time.monotonic() - self.t0

    # --- one client ---------------------------------------------------------------------

    async def session(self, wid):
        loop = asyncio.get_running_loop()
        source = f"127.0.0.{2 + wid % self.args.sources}"
        try:
            ws = await websockets.connect(self.uri, local_addr=(source, 0), open_timeout=10, close_timeout=10,
                                          ping_interval=None, compression=None, max_size=1 << 20)
        except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as e:
            self.error("upgrade_failed", repr(e))
            return
        self.counts["upgrades"] += 1
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        end_at = loop.time() + random.uniform(self.args.min_life, self.args.max_life)
        try:
            while loop.time() < end_at and not self.stop.is_set():
                size = random.randint(16, 2048)
                message = os.urandom(size) if random.random() < 0.5 else "x" * size
                await ws.send(message)
                try:
                    echo = await asyncio.wait_for(ws.recv(), 10)
                except asyncio.TimeoutError:
                    self.error("echo_timeout", f"{size} bytes")
                    break
                if echo != message:
                    self.error("echo_mismatch", f"{size} bytes sent, {len(echo)} back")
                self.counts["messages"] += 1
                await asyncio.sleep(min(random.uniform(0.1, 1.0), max(0.0, end_at - loop.time())))
            await ws.close(1000)
        except websockets.ConnectionClosed:
            pass  # the proxy closed it (a drain): judged below
        except Exception as e:  # anything else the client saw is an error too
            self.error("client_exception", repr(e))
        finally:
            self.open -= 1
        try:
            await asyncio.wait_for(ws.wait_closed(), 15)
        except asyncio.TimeoutError:
            self.error("close_timeout", "the TCP connection did not end")
            ws.transport.abort()
            return
        rcvd = ws.close_rcvd
        if rcvd is None:
            self.error("abnormal_close", f"no Close frame (code {ws.close_code})")
        elif rcvd.code == self.args.drain_code and rcvd.reason == self.args.drain_reason:
            self.counts["closed_by_drain"] += 1
        elif rcvd.code == 1000 and ws.close_sent is not None and ws.close_sent.code == 1000:
            self.counts["closed_by_client"] += 1
        else:
            self.error("unexpected_close", f"code {rcvd.code} reason {rcvd.reason!r}")

    async def client(self, wid):
        await asyncio.sleep(wid * self.args.ramp / self.args.sessions)  # spread the first connects
        while not self.stop.is_set():
            await self.session(wid)
            if not self.stop.is_set():
                await asyncio.sleep(random.uniform(0, 0.5))  # reconnect, a little jittered

    # --- drains and samples ---------------------------------------------------------------

    async def drainer(self):
        query = f"/drain?fraction={self.args.fraction}&spread={self.args.spread}"
        next_at = self.args.drain_every
        while True:
            try:
                await asyncio.wait_for(self.stop.wait(), max(0.0, next_at - self.now()))
                return
            except asyncio.TimeoutError:
                pass
            t = self.now()
            status, body = await asyncio.to_thread(admin, self.admin_port, "POST", query)
            if status != 202:
                self.error("drain_refused", f"{status} {body.strip()}")
            else:
                chosen = json.loads(body)["partial_drain"]["chosen"]
                self.counts["drains"] += 1
                self.counts["drain_chosen"] += chosen
                self.drains.append((t, chosen))
                print(f"  {t / 60:5.1f} min  partial drain: {chosen} sessions chosen", flush=True)
            next_at += self.args.drain_every

    async def sample(self, phase):
        # /proc first: the scrape below opens an admin connection of its own.
        rss, fds = rss_kib(self.proxy_pid), fd_count(self.proxy_pid)
        _, metrics = await asyncio.to_thread(admin, self.admin_port, "GET", "/metrics")
        row = {"t_s": round(self.now(), 1), "rss_kib": rss, "fds": fds, "proxy_sessions": int(sessions_active(metrics)),
               "client_sessions": self.open, "upgrades": self.counts["upgrades"],
               "errors": sum(self.errors.values()), "drains": self.counts["drains"], "phase": phase}
        self.samples.append(row)
        return row

    async def sampler(self):
        next_at = self.args.sample_every
        while True:
            try:
                await asyncio.wait_for(self.stop.wait(), max(0.0, next_at - self.now()))
                return
            except asyncio.TimeoutError:
                pass
            r = await self.sample("churn")
            if r["t_s"] % 60 < self.args.sample_every:
                print(f"  {r['t_s'] / 60:5.1f} min  rss {r['rss_kib'] / 1024:.1f} MiB  fds {r['fds']}  "
                      f"sessions {r['proxy_sessions']}  upgrades {r['upgrades']}  errors {r['errors']}", flush=True)
            next_at += self.args.sample_every

    async def run(self):
        await asyncio.sleep(2)  # let the readiness probes' admin connections close first
        self.t0 = time.monotonic()
        await self.sample("idle_before")
        tasks = [asyncio.create_task(self.client(i)) for i in range(self.args.sessions)]
        helpers = [asyncio.create_task(self.drainer()), asyncio.create_task(self.sampler())]
        try:
            await asyncio.wait_for(self.stop.wait(), self.args.minutes * 60)
        except asyncio.TimeoutError:
            pass
        await self.sample("churn")  # the last sample under load
        self.stop.set()
        await asyncio.gather(*helpers)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        # Idle again: every session gone from the proxy too, then the after-run sample.
        for _ in range(200):
            _, m = await asyncio.to_thread(admin, self.admin_port, "GET", "/metrics")
            if sessions_active(m) == 0:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        await self.sample("idle_after")


def start_processes(args, out):
    build = Path(args.build)
    backend = subprocess.Popen([str(build / "tests/tools/demo_backend"), "--port", "0"], stdout=subprocess.PIPE,
                               text=True)
    line = backend.stdout.readline()
    if not line.startswith("listening on "):
        backend.kill()
        sys.exit(f"demo_backend did not start: {line!r}")
    backend_port = int(line.split()[2])
    port, admin_port = free_port(), free_port()
    config = out / "wsdrain.yaml"
    config.write_text(f"""listen: 127.0.0.1:{port}
threads: {args.threads}
admin: {{listen: 127.0.0.1:{admin_port}}}
upstreams: [{{name: app, endpoints: [127.0.0.1:{backend_port}]}}]
routes: [{{path_prefix: /, upstream: app}}]
drain: {{spread: 5s, timeout: 25s, close_timeout: 5s, close_code: {args.drain_code}, close_reason: "{args.drain_reason}"}}
log: {{level: warn}}
""")
    log = open(out / "wsdrain.log", "w")
    proxy = subprocess.Popen([str(build / "proxy/app/wsdrain"), "--config", str(config)], stderr=log)
    for _ in range(100):
        try:
            if admin(admin_port, "GET", "/readyz", timeout=1)[0] == 200:
                return backend, proxy, port, admin_port
        except OSError:
            pass
        if proxy.poll() is not None:
            break
        time.sleep(0.1)
    for p in (proxy, backend):
        p.kill()
    sys.exit(f"wsdrain did not become ready; see {out / 'wsdrain.log'}")


def summarise(soak, args, proxy_status, out):
    churn = [s for s in soak.samples if s["phase"] == "churn"]
    idle_before = next(s for s in soak.samples if s["phase"] == "idle_before")
    idle_after = next((s for s in soak.samples if s["phase"] == "idle_after"), None)

    def mean(rows, key):
        return sum(r[key] for r in rows) / len(rows) if rows else float("nan")

    # Warm-up: the first 20% of the run. RSS growth compares the mean of the last 10% of the
    # samples with the mean of the 10% right after the warm-up.
    n = len(churn)
    after_warmup = churn[int(n * 0.2):max(int(n * 0.3), int(n * 0.2) + 1)]
    last = churn[-max(1, n // 10):]
    growth = (mean(last, "rss_kib") / mean(after_warmup, "rss_kib") - 1) * 100 if churn else float("nan")
    summary = {
        "minutes": args.minutes,
        "sessions_concurrent_target": args.sessions,
        "sessions_concurrent_peak": soak.peak_open,
        "source_addresses": args.sources,
        "lifetime_s": [args.min_life, args.max_life],
        "drain": {"every_s": args.drain_every, "fraction": args.fraction, "spread": args.spread},
        **soak.counts,
        "errors_total": sum(soak.errors.values()),
        "errors": soak.errors,
        "error_examples": soak.error_examples,
        "rss_kib": {"idle_before": idle_before["rss_kib"], "start": churn[0]["rss_kib"] if churn else None,
                    "end": churn[-1]["rss_kib"] if churn else None,
                    "max": max(s["rss_kib"] for s in churn) if churn else None,
                    "idle_after": idle_after["rss_kib"] if idle_after else None,
                    "growth_after_warmup_pct": round(growth, 2)},
        "fds": {"idle_before": idle_before["fds"], "start": churn[0]["fds"] if churn else None,
                "end": churn[-1]["fds"] if churn else None, "max": max(s["fds"] for s in churn) if churn else None,
                "idle_after": idle_after["fds"] if idle_after else None},
        "proxy_exit_status": proxy_status,
        "proxy_log_lines": sum(1 for _ in open(out / "wsdrain.log")),
    }
    checks = {
        "no client-visible errors": summary["errors_total"] == 0,
        "idle fds after == before": idle_after is not None and idle_after["fds"] == idle_before["fds"],
        f"RSS growth after warm-up within {args.max_rss_growth}%": abs(growth) <= args.max_rss_growth,
        "proxy exited 0 on SIGTERM": proxy_status == 0,
    }
    summary["checks"] = checks
    summary["pass"] = all(checks.values())
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    r, f = summary["rss_kib"], summary["fds"]
    text = f"""wsdrain soak: {args.minutes:g} min, {args.sessions} concurrent sessions, a partial drain every {args.drain_every:g} s (fraction {args.fraction}, spread {args.spread})
sessions: {soak.counts['upgrades']} opened (peak {soak.peak_open} at once), {soak.counts['messages']} echoes checked
closes:   {soak.counts['closed_by_client']} by the client (1000), {soak.counts['closed_by_drain']} by partial drains ({args.drain_code})
drains:   {soak.counts['drains']}, {soak.counts['drain_chosen']} sessions chosen in all
errors:   {summary['errors_total']} {json.dumps(soak.errors) if soak.errors else ''}
RSS MiB:  idle {r['idle_before'] / 1024:.1f}, start {r['start'] / 1024:.1f}, end {r['end'] / 1024:.1f}, max {r['max'] / 1024:.1f}, idle after {r['idle_after'] / 1024:.1f} (growth after warm-up {r['growth_after_warmup_pct']:+.1f}%)
fds:      idle {f['idle_before']}, start {f['start']}, end {f['end']}, max {f['max']}, idle after {f['idle_after']}
proxy:    exit status {proxy_status}, {summary['proxy_log_lines']} log lines at warn or above
"""
    text += "".join(f"check:    {'ok  ' if ok else 'FAIL'} {name}\n" for name, ok in checks.items())
    text += f"result:   {'PASS' if summary['pass'] else 'FAIL'}\n"
    (out / "summary.txt").write_text(text)
    return summary, text


def write_csv(soak, out):
    keys = ["t_s", "rss_kib", "fds", "proxy_sessions", "client_sessions", "upgrades", "errors", "drains", "phase"]
    with open(out / "samples.csv", "w") as f:
        f.write(",".join(keys) + "\n")
        for s in soak.samples:
            f.write(",".join(str(s[k]) for k in keys) + "\n")
    with open(out / "drains.csv", "w") as f:
        f.write("t_s,chosen\n")
        for t, chosen in soak.drains:
            f.write(f"{t:.1f},{chosen}\n")


def plot(args, out):
    title = (f"wsdrain soak: {args.minutes:g} min, {args.sessions} sessions churning, "
             f"partial drain every {args.drain_every:g} s (fraction {args.fraction}, spread {args.spread})")
    script = f"""set terminal pngcairo size 1200,820 font "sans,10"
set output "{out / 'soak.png'}"
set datafile separator ","
set grid
set key below
set multiplot layout 2,1 title "{title}"
set ylabel "RSS (MiB)"
set yrange [0:*]
set xrange [0:*]
plot "{out / 'samples.csv'}" skip 1 using ($1/60):($2/1024) with linespoints pt 7 ps 0.4 lw 2 title "wsdrain RSS (VmRSS)"
set xlabel "minutes"
set ylabel "count"
plot "{out / 'samples.csv'}" skip 1 using ($1/60):3 with linespoints pt 7 ps 0.4 lw 2 title "wsdrain open fds", \\
     "{out / 'samples.csv'}" skip 1 using ($1/60):4 with lines lw 1 title "sessions open in the proxy", \\
     "{out / 'drains.csv'}" skip 1 using ($1/60):2 with impulses lw 2 title "partial drain (sessions chosen)"
unset multiplot
"""
    (out / "soak.gp").write_text(script)
    subprocess.run(["gnuplot", str(out / "soak.gp")], check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--sessions", type=int, default=300, help="concurrent sessions kept churning")
    p.add_argument("--min-life", type=float, default=2, help="shortest session, seconds")
    p.add_argument("--max-life", type=float, default=30, help="longest session, seconds")
    p.add_argument("--sources", type=int, default=8, help="client source addresses 127.0.0.2...")
    p.add_argument("--ramp", type=float, default=5, help="seconds over which the first sessions connect")
    p.add_argument("--drain-every", type=float, default=60)
    p.add_argument("--fraction", default="0.5")
    p.add_argument("--spread", default="5s")
    p.add_argument("--drain-code", type=int, default=1001)
    p.add_argument("--drain-reason", default="server draining")
    p.add_argument("--sample-every", type=float, default=10)
    p.add_argument("--threads", type=int, default=2, help="wsdrain event loops")
    p.add_argument("--max-rss-growth", type=float, default=10, help="percent")
    p.add_argument("--build", default=str(ROOT / "build"))
    p.add_argument("--out", default=str(ROOT / "build/soak"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    backend, proxy, port, admin_port = start_processes(args, out)
    print(f"soak: wsdrain pid {proxy.pid} on 127.0.0.1:{port} (admin {admin_port}), "
          f"demo_backend pid {backend.pid}; {args.minutes:g} min, results in {out}", flush=True)
    soak = Soak(args, proxy.pid, port, admin_port)
    proxy_status = None
    try:
        asyncio.run(soak.run())
    finally:
        # Ended by PID: SIGTERM drains (nothing is left) and exits 0.
        proxy.send_signal(signal.SIGTERM)
        try:
            proxy_status = proxy.wait(30)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()
        backend.send_signal(signal.SIGTERM)
        try:
            backend.wait(10)
        except subprocess.TimeoutExpired:
            backend.kill()
            backend.wait()
    write_csv(soak, out)
    summary, text = summarise(soak, args, proxy_status, out)
    plot(args, out)
    print(text, end="")
    print(f"plot: {out / 'soak.png'}")
    sys.exit(0 if summary["pass"] else 1)


if __name__ == "__main__":
    main()
