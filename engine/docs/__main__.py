"""`python -m engine.docs` is `policykb docs`: the same options, defaults and exit codes."""

from __future__ import annotations

from engine.cli import docs

if __name__ == "__main__":
    docs(prog_name="python -m engine.docs", help_option_names=["-h", "--help"])
