"""`policykb scrub` reads its claims from standard input (`-`) or a pipe as it reads a file: the
same records in the same order, error records included, with --workers and --resume."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main

ROOT = Path(__file__).resolve().parents[1]
BATCH = ROOT / "examples" / "batch.jsonl"


def _with_a_broken_record(tmp_path: Path) -> Path:
    """The bundled batch with a line that is not JSON and a blank line in the middle: their
    records must keep their input line numbers whatever the input is."""
    lines = BATCH.read_bytes().splitlines(keepends=True)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join([*lines[:5], b"{not json\n", b"\n", *lines[5:]]))
    return src


def _scrub_file(src: Path, out: Path, *args: str) -> bytes:
    res = CliRunner().invoke(main, ["scrub", str(src), "-o", str(out), *args])
    assert res.exit_code in (0, 1), res.output
    return out.read_bytes()


def test_standard_input_gives_the_records_of_the_same_file(tmp_path: Path) -> None:
    src = _with_a_broken_record(tmp_path)
    expected = _scrub_file(src, tmp_path / "file.jsonl")
    records = [json.loads(x) for x in expected.splitlines()]
    assert len(records) == 33  # 32 claims and the broken line; a blank line is no record
    # the broken line is input line 6; the bundled batch's own two broken claims (its lines 9
    # and 22) come two lines later, after the inserted line and the blank one
    assert [r["error"]["record"] for r in records if "error" in r] == [6, 11, 24]
    out = tmp_path / "stdin.jsonl"
    res = CliRunner().invoke(main, ["scrub", "-", "-o", str(out)], input=src.read_bytes())
    assert res.exit_code == 1, res.output  # the broken line is a failed record
    assert out.read_bytes() == expected


def test_a_real_pipe_on_standard_input_with_two_workers(tmp_path: Path) -> None:
    src = _with_a_broken_record(tmp_path)
    expected = _scrub_file(src, tmp_path / "file.jsonl", "--workers", "2")
    out = tmp_path / "pipe.jsonl"
    with src.open("rb") as fh:
        run = subprocess.run(
            [sys.executable, "-m", "engine.cli", "scrub", "-", "-o", str(out), "--workers", "2"],
            stdin=fh,
            capture_output=True,
            cwd=ROOT,
        )
    assert run.returncode == 1, run.stderr.decode()
    assert b"Traceback" not in run.stderr
    assert out.read_bytes() == expected


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_read_once_and_resumed(tmp_path: Path) -> None:
    src = _with_a_broken_record(tmp_path)
    expected = _scrub_file(src, tmp_path / "file.jsonl")
    fifo = tmp_path / "claims.fifo"

    def scrub_through_fifo(out: Path, *args: str) -> int:
        os.mkfifo(fifo)
        try:
            feeder = threading.Thread(target=fifo.write_bytes, args=(src.read_bytes(),), daemon=True)
            feeder.start()
            res = CliRunner().invoke(main, ["scrub", str(fifo), "-o", str(out), *args])
            if feeder.is_alive():  # scrub never read the pipe: read its end here to free the feeder
                reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
                while feeder.is_alive():
                    with contextlib.suppress(BlockingIOError):
                        os.read(reader, 1 << 16)
                os.close(reader)
            return res.exit_code
        finally:
            fifo.unlink()

    out = tmp_path / "fifo.jsonl"
    assert scrub_through_fifo(out) == 1
    assert out.read_bytes() == expected
    # an interrupted run left ten records and half of the eleventh: --resume reads the stream
    # again from its start, skips the ten and writes the rest
    done = expected.splitlines(keepends=True)
    out.write_bytes(b"".join(done[:10]) + done[10][: len(done[10]) // 2])
    assert scrub_through_fifo(out, "--resume") == 1
    assert out.read_bytes() == expected


def test_a_directory_or_a_missing_input_exits_2_with_a_message(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["scrub", str(tmp_path), "-o", str(tmp_path / "out.jsonl")])
    assert res.exit_code == 2
    assert "a directory, not a file of claims" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["scrub", str(tmp_path / "nope.jsonl")])
    assert res.exit_code == 2 and "no such file" in res.output
