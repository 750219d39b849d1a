"""What `policykb explain` does with the inputs and outputs a new user tries: binary files,
arrays of claims, standard input, typos in field names, and output piped into `head`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import EXIT_PIPE, main

ROOT = Path(__file__).resolve().parents[1]
EM = ROOT / "examples" / "office-96372-with-em.json"
FACILITY = ROOT / "examples" / "facility-96372-pos22.json"


def _explain(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, ["explain", *args], input=input)
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.stdout, res.stderr


def test_a_binary_file_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    png = tmp_path / "scan.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    code, out, err = _explain(str(png))
    assert code == 2
    assert out == ""
    assert f"{png}: $: not a JSON text file: byte 0x89 at offset 0 is not UTF-8" in err
    assert "Traceback" not in err


def test_a_misspelt_field_is_an_input_error_with_a_suggestion(tmp_path: Path) -> None:
    claim = json.loads(EM.read_text(encoding="utf-8"))
    claim["lines"][1]["modifer"] = claim["lines"][1].pop("modifiers", ["25"])
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(claim), encoding="utf-8")
    code, out, err = _explain(str(path))
    assert code == 2 and out == ""
    assert 'lines[1].modifer: line 2: unknown field "modifer" (did you mean "modifiers"?)' in err


def test_an_array_of_claims_gives_one_json_array_of_their_results(tmp_path: Path) -> None:
    claims = [json.loads(p.read_text(encoding="utf-8")) for p in (EM, FACILITY)]
    both = tmp_path / "two.json"
    both.write_text(json.dumps(claims), encoding="utf-8")
    code, out, _ = _explain(str(both), "--format", "json", "--no-remedies")
    assert code == 0
    results = json.loads(out)  # one document: a second one after it would not parse
    assert isinstance(results, list)
    singles = [json.loads(_explain(str(p), "--format", "json", "--no-remedies")[1]) for p in (EM, FACILITY)]
    assert [r["claim"] for r in singles] == [c["id"] for c in claims]
    assert results == singles  # each a claim object, the same as explaining its file alone


def test_why_not_on_an_array_is_one_json_array_too(tmp_path: Path) -> None:
    claim = json.loads(EM.read_text(encoding="utf-8"))
    second = {**claim, "id": claim["id"] + "-B"}
    path = tmp_path / "two.json"
    path.write_text(json.dumps([claim, second]), encoding="utf-8")
    code, out, _ = _explain(str(path), "--format", "json", "--line", "1", "--why-not", "inj.facility_em")
    assert code == 0
    assert [(r["claim"], r["line"]) for r in json.loads(out)] == [(claim["id"], 1), (second["id"], 1)]


def test_dash_reads_the_claim_from_standard_input() -> None:
    from_file = _explain(str(EM), "--format", "json", "--no-remedies")
    from_stdin = _explain("-", "--format", "json", "--no-remedies", input=EM.read_bytes())
    assert from_stdin[0] == 0
    assert from_stdin == from_file


def test_bad_standard_input_is_named_as_such() -> None:
    code, out, err = _explain("-", input=b'{"id": "x",')
    assert code == 2 and out == ""
    assert "<stdin>: $: malformed JSON" in err


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_output_into_a_closed_pipe_ends_quietly(fmt: str) -> None:
    """As `policykb explain claim.json | head -0` would: the reader is gone before any output.
    (JSON is written by the CLI, text through rich, which would otherwise exit 1 on its own.)"""
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "explain", str(EM), "--format", fmt],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == EXIT_PIPE == 141
    # Nothing but, on a cold cache, the one-line notice that the table cache is being built.
    assert [line for line in err.splitlines() if not line.startswith("policykb: first run:")] == []
