#!/usr/bin/python3
"""The drain benchmark (issue 6): as many sessions as the descriptor limit allows, drained.

Starts the demo echo backend and wsdrain (drain.spread 10 s by default) as processes on
loopback ports chosen at run time, opens as many WebSocket sessions through wsdrain as its
hard descriptor limit allows (two descriptors a session; the load generator spreads them over
source addresses 127.0.0.1 .. 127.0.0.8), then sends wsdrain SIGTERM and watches it drain:

- the load generator stamps the arrival of every session's Close frame and whether the close
  handshake completed (Close both ways, then the TCP connection ended);
- the close times go into a histogram per 100 ms from the SIGTERM; the largest one-second
  bucket inside the spread is compared with the mean of those buckets;
- wsdrain's own count of clean and forced closes comes from its "drained" log line;
- wsdrain's CPU time (/proc/PID/stat, then its rusage at exit) and RSS (/proc/PID/status,
  sampled every 100 ms) are read during the drain.

  tests/bench/drain_bench.py --build build [--sessions N] [--spread 10] [--threads 1] [--out DIR]

The run passes (exit 0) when every session got its Close and completed the handshake, wsdrain
counted no forced close, the largest one-second bucket is within --max-bucket-ratio (1.3) of
the mean, and wsdrain exited 0 within drain.timeout. Results: DIR/drain.json, DIR/summary.txt,
and DIR/histogram.png when gnuplot is installed. Processes are ended by their PID.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import compare  # tests/bench/compare.py: the same process and port helpers
from compare import cpu_seconds, free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]


def rss_kib(pid):
    """compare.rss_kib, or 0 once the process is gone (wsdrain exits at the end of its drain)."""
    try:
        return compare.rss_kib(pid)
    except OSError:
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--sessions", type=int, default=0, help="default: as many as the descriptor limit allows")
    ap.add_argument("--spread", type=float, default=10.0, help="drain.spread in seconds")
    ap.add_argument("--threads", type=int, default=1, help="wsdrain's event loops")
    ap.add_argument("--max-bucket-ratio", type=float, default=1.3)
    ap.add_argument("--out", default="build/drain-bench")
    args = ap.parse_args()
    build = Path(args.build).resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # Every process started here inherits the raised soft limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Two descriptors a session in wsdrain, less a margin for its listeners, admin and logs.
    sessions = args.sessions or (hard - 100) // 2
    close_timeout = 5.0
    timeout = args.spread + close_timeout + 10

    work = Path(tempfile.mkdtemp(prefix="wsdrain-drain-bench-"))
    procs = []
    try:
        backend = subprocess.Popen([str(build / "tests/tools/demo_backend")], stdout=subprocess.PIPE, text=True)
        procs.append(backend)
        backend_port = int(backend.stdout.readline().split()[-1])
        port, admin_port = free_port(), free_port()
        conf = work / "wsdrain.yaml"
        conf.write_text(f"""listen: 127.0.0.1:{port}
threads: {args.threads}
admin: {{listen: 127.0.0.1:{admin_port}}}
upstreams: [{{name: app, endpoints: [127.0.0.1:{backend_port}]}}]
drain: {{pre_delay: 0s, spread: {args.spread}s, close_timeout: {close_timeout}s, timeout: {timeout}s}}
""")
        log_path = work / "wsdrain.log"
        log = open(log_path, "w")
        proxy = subprocess.Popen([str(build / "proxy/app/wsdrain"), "--config", str(conf)], stdout=log,
                                 stderr=subprocess.STDOUT)
        procs.append(proxy)
        wait_port(port)

        print(f"opening {sessions} sessions (descriptor limit {hard})", file=sys.stderr, flush=True)
        gen = subprocess.Popen([str(build / "tests/bench/wsdrain_loadgen"), "drain", "--port", str(port),
                                "--sessions", str(sessions), "--sources", "8", "--seconds", str(timeout + 30)],
                               stdout=subprocess.PIPE, text=True)
        procs.append(gen)
        opened = json.loads(gen.stdout.readline())
        if opened.get("open") != sessions:
            raise RuntimeError(f"sessions did not open: {opened}")
        time.sleep(2)

        # The drain, sampled every 100 ms until wsdrain exits.
        rss_before, cpu_before = rss_kib(proxy.pid), cpu_seconds(proxy.pid)
        samples = []
        t0_ns = time.time_ns()
        proxy.send_signal(signal.SIGTERM)
        result = {}
        reader = threading.Thread(target=lambda: result.update(json.loads(gen.stdout.readline())))
        reader.start()
        while True:
            try:
                pid, status, usage = os.wait4(proxy.pid, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                break
            samples.append(((time.time_ns() - t0_ns) / 1e9, rss_kib(proxy.pid)))
            time.sleep(0.1)
        exit_s = (time.time_ns() - t0_ns) / 1e9
        proxy.returncode = os.waitstatus_to_exitcode(status)
        cpu_drain = usage.ru_utime + usage.ru_stime - cpu_before
        reader.join(timeout=60)
        gen.wait(timeout=60)
        log.close()
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()

    # wsdrain's own account of the drain.
    drained = {}
    for line in log_path.read_text().splitlines():
        if " info drained " in line:  # ... info drained duration_s=10.002 sessions_at_start=9950 closed_clean=...
            drained = {k: float(v) if "." in v else int(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
    shutil.copy(log_path, out / "wsdrain.log")
    shutil.rmtree(work, ignore_errors=True)

    closes = sorted((t - t0_ns) / 1e9 for t in result.get("close_frame_ns", []))
    buckets = [0] * (int(max(closes + [args.spread]) * 10) + 1)
    for t in closes:
        buckets[int(t * 10)] += 1
    seconds = [sum(buckets[i * 10:(i + 1) * 10]) for i in range(int(args.spread))]
    mean = sum(seconds) / len(seconds) if seconds else 0
    largest = max(seconds) if seconds else 0
    ratio = largest / mean if mean else float("inf")
    forced = drained.get("closed_forced", -1)
    peak_rss = max([r for _, r in samples] + [rss_before])

    report = {
        "sessions": sessions, "descriptor_limit": hard, "spread_s": args.spread, "threads": args.threads,
        "loadgen": {k: v for k, v in result.items() if not k.endswith("_ns")},
        "wsdrain_drained_log": drained, "wsdrain_exit_code": proxy.returncode, "wsdrain_exit_s": exit_s,
        "first_close_s": closes[0] if closes else None, "last_close_s": closes[-1] if closes else None,
        "histogram_100ms": buckets, "one_second_buckets": seconds, "largest_bucket_over_mean": ratio,
        "cpu_s_during_drain": cpu_drain, "rss_kib_before": rss_before, "rss_kib_peak_during": peak_rss,
        "rss_samples": samples, "close_times_s": closes,
    }
    (out / "drain.json").write_text(json.dumps(report, indent=1))

    lines = [
        f"sessions: {sessions} (descriptor limit {hard}), drain.spread {args.spread:g} s, {args.threads} event loop(s)",
        f"Close frames received: {len(closes)}, codes {result.get('codes')}; handshakes completed: "
        f"{result.get('clean')}, not completed: {result.get('unclean')}, never closed: {result.get('still_open')}",
        f"wsdrain: closed_clean {drained.get('closed_clean')}, closed_forced {forced}, drain "
        f"{drained.get('duration_s', float('nan')):.2f} s, exit code {proxy.returncode} at {exit_s:.2f} s",
        f"first Close at {closes[0] if closes else float('nan'):.3f} s, last at "
        f"{closes[-1] if closes else float('nan'):.3f} s after SIGTERM",
        f"one-second buckets: {seconds}; largest {largest} = {ratio:.3f} x the mean {mean:.1f}",
        f"wsdrain during the drain: {cpu_drain:.2f} s CPU ({cpu_drain / max(1, sessions) * 1e6:.1f} µs a session), "
        f"RSS {rss_before / 1024:.1f} MiB before, {peak_rss / 1024:.1f} MiB at most",
        "closes per 100 ms: " + " ".join(str(b) for b in buckets),
    ]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    if shutil.which("gnuplot"):
        data = out / "histogram.dat"
        data.write_text("".join(f"{i / 10:.1f} {b}\n" for i, b in enumerate(buckets)))
        subprocess.run(["gnuplot", "-e", f"""set terminal pngcairo size 900,400; set output '{out / "histogram.png"}';
set title 'wsdrain: Close frames per 100 ms after SIGTERM ({sessions} sessions, spread {args.spread:g} s)';
set xlabel 'seconds after SIGTERM'; set ylabel 'closes per 100 ms'; set style fill solid; set boxwidth 0.09;
set xrange [0:*]; set yrange [0:*]; plot '{data}' using ($1+0.05):2 with boxes notitle"""], check=False)

    ok = (len(closes) == sessions and result.get("unclean") == 0 and result.get("still_open") == 0 and forced == 0
          and ratio <= args.max_bucket_ratio and proxy.returncode == 0 and exit_s <= timeout)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
