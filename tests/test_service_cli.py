"""`policykb serve` as a user runs it: it listens, answers /v1/health, stops cleanly on Ctrl-C,
and says why when the port is taken. (How fast it starts is measured by
benchmarks/load_service.py, not asserted here.)"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[1]
READY_SECONDS = 180


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


def test_serve_answers_health_and_stops_on_interrupt() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + READY_SECONDS
        seen: list[int] = []
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10)
                seen.append(r.status_code)
                if r.status_code == 200:
                    break
                assert r.status_code == 503 and r.json()["status"] == "starting"
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        assert seen and seen[-1] == 200, (seen, proc.poll())
        assert r.json()["kb"]["version"] and r.json()["workers"]["ready"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Traceback" not in out


def test_serve_on_a_taken_port_exits_2_with_a_message() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "engine.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr
