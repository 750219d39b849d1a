"""Run the service under uvicorn (what `policykb serve` calls)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn

from engine.service.app import create_app
from engine.service.config import ServiceConfig


def serve(
    host: str, port: int, *, workers: int, kb_dir: Path | None = None, reference_url: str | None = None, **limits: Any
) -> int:
    """Listen until interrupted; 0 on a clean stop, 2 when the address cannot be used."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    config = ServiceConfig(kb_dir=kb_dir, workers=workers, reference_url=reference_url, **limits)
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
    return 0
