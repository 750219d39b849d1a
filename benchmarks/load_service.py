"""A bounded load test of `policykb serve` on the loopback address.

Starts the server (`python -m engine.cli serve`) on 127.0.0.1 with a free port, measures how
long it takes to answer /v1/health at all and to be ready, then sends a fixed number of
POST /v1/adjudicate requests (the bundled examples, in turn) from concurrent clients and
reports p50/p99 latency and requests per second. It stops by itself: a fixed request count,
a deadline, and the server is stopped at the end.

    python -m benchmarks.load_service --requests 300 --clients 8 --workers 2
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only, by design
DEADLINE_SECONDS = 300


def free_port() -> int:
    with socket.create_server((HOST, 0)) as s:
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used (Linux /proc), a figure the machine's load
    does not inflate the way it inflates wall-clock time."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def start_server(port: int, workers: int) -> tuple[subprocess.Popen[bytes], float, float, float | None]:
    """The server process, seconds until /v1/health first answered (and the server's CPU
    seconds by then), seconds until it said ok."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = ready = None
    cpu = None
    while time.perf_counter() - t0 < DEADLINE_SECONDS and proc.poll() is None:
        try:
            r = httpx.get(f"http://{HOST}:{port}/v1/health", timeout=5)
            if first is None:
                first, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid)
            if r.status_code == 200:
                ready = time.perf_counter() - t0
                break
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    if first is None or ready is None:
        proc.kill()
        raise SystemExit("the server did not become ready")
    return proc, first, ready, cpu


def load(port: int, bodies: list[bytes], total: int, clients: int) -> tuple[list[float], Counter[int], float]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    counter = iter(range(total))
    stop_at = time.perf_counter() + DEADLINE_SECONDS

    def client() -> None:
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=60) as c:
            for i in counter:
                if time.perf_counter() > stop_at:
                    return
                t = time.perf_counter()
                r = c.post(
                    "/v1/adjudicate", content=bodies[i % len(bodies)], headers={"Content-Type": "application/json"}
                )
                with lock:
                    latencies.append(time.perf_counter() - t)
                    statuses[r.status_code] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    bodies = [p.read_bytes() for p in sorted((ROOT / "examples").glob("*.json"))]
    port = free_port()
    proc, first, ready, cpu = start_server(port, args.workers)
    try:
        latencies, statuses, seconds = load(port, bodies, args.requests, args.clients)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(f"cache: {os.environ.get('POLICYKB_CACHE_DIR', '~/.cache/policykb')}")
    print("| what | figure |\n| --- | --- |")
    print(f"| machine load average (1 min, {os.cpu_count()} cores) | {os.getloadavg()[0]:.1f} |")
    print(f"| first answer on /v1/health after start | {first:.2f} s wall, {cpu or 0:.2f} s CPU |")
    print(f"| ready (KB and {args.workers} workers loaded) | {ready:.2f} s |")
    print(f"| requests (clients, examples) | {len(ms)} ({args.clients}, {len(bodies)}) |")
    print(f"| status codes | {dict(sorted(statuses.items()))} |")
    print(f"| p50 / p99 latency | {statistics.median(ms):.1f} / {p99:.1f} ms |")
    print(f"| throughput | {len(ms) / seconds:.1f} requests/s |")
    return 0 if set(statuses) == {200} else 1


if __name__ == "__main__":
    sys.exit(main())
