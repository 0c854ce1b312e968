"""The run directory layout (hiervq.layout.RunDir) and the io helpers it writes through."""

import math
import os
from pathlib import Path

import pytest

from hiervq.errors import HierVQError
from hiervq.io import read_json, read_jsonl, write_json, write_jsonl
from hiervq.layout import RunDir


def test_run_dir_paths_and_defaults(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.config == tmp_path / "r" / "config.yaml"
    assert run.checkpoint == tmp_path / "r" / "checkpoints" / "last.pt"
    assert run.model == tmp_path / "r" / "model" and run.summary == tmp_path / "r" / "summary.json"
    assert run.codes == tmp_path / "r" / "codes.npz" and run.analysis == tmp_path / "r" / "analysis"
    assert run.prior(1).path == tmp_path / "r" / "priors" / "level1"
    assert RunDir.default("configs/demo.yaml").path == Path("runs/demo")
    assert RunDir.default(None).path == Path("runs/default")
    assert os.fspath(run) == str(tmp_path / "r") and Path(run) == tmp_path / "r" and RunDir(run) == run
    assert not (tmp_path / "r").exists()  # RunDir creates nothing
    with pytest.raises(AttributeError):
        run.config = tmp_path / "elsewhere.yaml"  # the layout is fixed


def test_run_dir_questions(tmp_path):
    run = RunDir(tmp_path / "r")
    assert not run.has_checkpoint() and not run.is_finished() and run.find_priors() == []
    run.checkpoint.parent.mkdir(parents=True)
    run.checkpoint.write_bytes(b"x")
    assert run.has_checkpoint()
    run.write_summary({"mse": 0.5})
    assert run.is_finished() and run.read_summary() == {"mse": 0.5}
    for level in (1, 0):
        (run.prior(level).model).mkdir(parents=True)
        (run.prior(level).model / "config.json").write_text("{}")
    (run.priors / "level2").mkdir()  # no saved prior yet
    (run.priors / ".level3.new-abc").mkdir()  # half of a swap
    assert [p.name for p in run.find_priors()] == ["level0", "level1"]


def test_metrics_lines(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_metrics() == []
    run.append_metrics({"epoch": 1})
    run.append_metrics({"epoch": 2})
    assert run.read_metrics() == [{"epoch": 1}, {"epoch": 2}]
    run.write_metrics([{"epoch": 1}])
    assert read_jsonl(run.metrics) == [{"epoch": 1}]
    write_jsonl(run.metrics, [])
    assert run.read_metrics() == []


def test_json_is_strict(tmp_path):
    write_json(tmp_path / "a.json", {"x": [1, 2.5]})
    assert read_json(tmp_path / "a.json") == {"x": [1, 2.5]}
    with pytest.raises(HierVQError, match="x.1"):
        write_json(tmp_path / "b.json", {"x": [1, math.nan]})
    assert not (tmp_path / "b.json").exists()


def test_old_import_paths_still_work():
    from hiervq.io import atomic_write_bytes
    from hiervq.pretrained import atomic_write_bytes as old_atomic
    from hiervq.train.checkpoint import has_checkpoint
    from hiervq.train.report import write_json as old_write_json

    assert old_atomic is atomic_write_bytes and old_write_json is write_json
    assert has_checkpoint("/nonexistent") is False
