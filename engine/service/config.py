"""What `policykb serve` is configured with: where the KB is, how many workers, the limits."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.claims import MAX_UNITS as CLAIM_MAX_UNITS

MAX_BODY_BYTES = 1_048_576  # 1 MiB: a 50-line claim with full documentation is under 40 KiB
MAX_LINES = 50  # an X12 837P claim carries at most 50 service lines (loop 2400)
MAX_UNITS = CLAIM_MAX_UNITS  # per line; no lower by default: real MUE values reach 90,000 (J7212)


@dataclass(frozen=True)
class ServiceConfig:
    kb_dir: Path | None = None
    cache_dir: Path | None = None
    workers: int = 2
    max_body_bytes: int = MAX_BODY_BYTES
    max_lines: int = MAX_LINES
    max_units: int = MAX_UNITS
    examples_dir: Path | None = None  # bundled examples for the page; default examples/ beside kb/
    reference_dir: Path | None = None  # the built reference site (mkdocs), served at /reference/
    reference_url: str | None = None  # or where it is published; links on the page point there

    @property
    def kb_root(self) -> Path:
        """engine.kb.default_kb_dir without importing engine.kb (its checker and compiler): the
        server must listen before the KB loads."""
        if self.kb_dir is not None:
            return self.kb_dir
        env = os.environ.get("POLICYKB_KB")
        return Path(env) if env else Path(__file__).resolve().parents[2] / "kb"

    @property
    def examples(self) -> Path:
        return self.examples_dir or self.kb_root.resolve().parent / "examples"

    @property
    def reference(self) -> Path | None:
        """The built site to mount, if any: given, or build/html beside kb/ when it exists."""
        if self.reference_dir is not None:
            return self.reference_dir
        built = self.kb_root.resolve().parent / "build" / "html"
        return built if (built / "index.html").is_file() else None

    @property
    def reference_base(self) -> str | None:
        """Base URL of the reference site for links, ending in '/'; None when there is none."""
        if self.reference_url:
            return self.reference_url.rstrip("/") + "/"
        return "/reference/" if self.reference is not None else None
