"""Every committed result names the benchmark script that writes it (issue 29: no number without its script).

Reads only the JSON files and the scripts' source text: no import of the benchmarks, no torch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FILES = sorted(RESULTS.glob("*.json"))


def _scripts(data) -> set:
    """The "script" of a dict JSON (top level), or of every row of a list JSON (None for a row without one)."""
    if isinstance(data, list):
        return {row.get("script") if isinstance(row, dict) else None for row in data} or {None}
    return {data.get("script")}


def _written_by(source: str, path: Path) -> bool:
    """Whether the script's source names ``path``: its file name or stem, or a stem it writes that ``path``'s stem
    extends by ``_SUFFIX`` when the script takes ``--tag`` or ``--output``/``--out``/``--results``."""
    if path.name in source or re.search(rf"\b{re.escape(path.stem)}\b", source):
        return True
    if not re.search(r"--(tag|output|out|results)\b", source):
        return False
    stems = set(re.findall(r"([A-Za-z0-9_]+)(?:\{[^}]*\})?\.json", source))
    return any(path.stem.startswith(stem + "_") for stem in stems)


def test_there_are_results():
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_result_names_the_script_that_writes_it(path):
    data = json.loads(path.read_text())
    scripts = _scripts(data)
    assert len(scripts) == 1 and None not in scripts, f"{path.name}: \"script\" missing (top level, or in every row)"
    script = scripts.pop()
    assert re.fullmatch(r"benchmarks/[A-Za-z0-9_]+\.py", script), script
    source_path = REPO / script
    assert source_path.is_file(), f"{path.name} names {script}, which does not exist"
    source = source_path.read_text()
    assert _written_by(source, path), f"{script} does not mention {path.name} (nor a --tag/--output stem of it)"
    assert f'"{script}"' in source, f"{script} does not write its own name"


def test_the_check_refuses_what_it_should():
    """The matching rule itself: a name or stem counts; a suffixed stem only with an output option."""
    src = 'out = RESULTS / "recon_x.json"\nparser.add_argument("--output")\n'
    assert _written_by(src, Path("recon_x.json"))
    assert _written_by(src, Path("recon_x_seed1.json"))
    assert not _written_by(src.replace("--output", "--other"), Path("recon_x_seed1.json"))
    assert not _written_by(src, Path("recon_y.json"))
    assert _scripts([{"script": "a"}, {}]) == {"a", None}
