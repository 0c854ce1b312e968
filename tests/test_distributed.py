"""Codebooks under torch.distributed, for real: 2 CPU processes with the gloo backend.

* with data (k-means++) initialisation and dead-code reset on, every rank ends with bit-identical codebooks (also
  with a warm-up before the data init and averaged re-seeding);
* with dead-code reset off, the codebooks equal those of one process trained on the concatenated batches
  (the all-reduced counts and sums are that batch's counts and sums);
* the quantizer family, every kind a level can use (ResidualVQ with EMA, resets and quantizer dropout, shared or
  learned books; FSQ; LFQ with its batch entropy; SimVQ; MultiScaleVQ with its shared book, resets, convolutions
  and learned codes): bitwise identical on every rank, and equal to one process on the concatenated batches
  (parameters and codebooks);
* ``torchrun --nproc-per-node 2 -m hiervq train`` end to end: rank-0-only logging and files, complete run
  directory, resume.

Every launch has a timeout (and the process group a collective timeout), so a hang fails instead of blocking.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hiervq.models.base import QuantizerConfig
from hiervq.models.hierarchical import HierarchicalConfig, HierarchicalVQVAE, LevelConfig
from hiervq.quantize import Codebook
from hiervq.train.distributed import DistInfo, wrap_ddp

REPO = Path(__file__).resolve().parents[1]
WORLD = 2
STEPS = 4
BATCH = 4  # images per rank and step
LAUNCH_TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

SCENARIOS = {
    # data initialisation (k-means++ on the gathered rows) and dead-code reset on: bitwise identity across ranks
    "reset_on": dict(init="kmeans", kmeans_iters=3, dead_threshold=12.0, dead_window=2, estimator="rotation"),
    # reset off: equality with one process on the concatenated batches
    "reset_off": dict(init="data", dead_threshold=0.0, estimator="ste"),
    # warm-up (2 pass-through steps, then data init) with learned codes, averaged re-seeding: bitwise identity
    "warmup_mean": dict(init="data", init_after=2, ema_decay=None, dead_threshold=12.0, dead_window=1, reseed="mean"),
    # the quantizer family (issue 17), on both levels (level 0 has code_dim 4)
    # residual, EMA, k-means init, dead-code reset and quantizer dropout: bitwise identity across ranks
    "residual_reset": dict(kind="residual", stages=3, dropout=0.5, init="kmeans", kmeans_iters=2, dead_threshold=12.0,
                           dead_window=2),
    # residual with a shared EMA book and dropout, no reset: equals one process on the concatenated batches
    "residual_off": dict(kind="residual", stages=2, shared=True, dropout=0.5, init="data", dead_threshold=0.0),
    # residual with learned codes and dropout: dropped books still take part in the gradient all-reduce
    "residual_learned": dict(kind="residual", stages=3, dropout=1.0, ema_decay=None, init="data", dead_threshold=0.0),
    "fsq": dict(kind="fsq", levels=[5, 4, 3, 2]),
    # LFQ's codebook entropy is that of the global batch: equal to one process on the concatenated batches
    "lfq": dict(kind="lfq", bits=4, inv_temperature=1.0, entropy_weight=0.5),
    "simvq": dict(simvq=True, ema_decay=None),
    # multi-scale, per level (its last scale is the level's grid: 8x8 bottom, 4x4 top): one shared EMA book with
    # k-means init and dead-code reset fed by every scale's rows: bitwise identity across ranks
    "multiscale_reset": dict(per_level=[
        dict(kind="multiscale", scales=[1, 2, 4, 8], init="kmeans", kmeans_iters=2, dead_threshold=12.0, dead_window=2),
        dict(kind="multiscale", scales=[1, 2, 3, 4], convs=2, estimator="rotation", init="kmeans", kmeans_iters=2,
             dead_threshold=12.0, dead_window=2),
    ]),
    # multi-scale, no reset: EMA book (bottom) and learned codes (top), both with their convs trained through the
    # codebook term: equal to one process on the concatenated batches
    "multiscale_off": dict(per_level=[
        dict(kind="multiscale", scales=[1, 2, 4, 8], init="data", dead_threshold=0.0),
        dict(kind="multiscale", scales=[2, 4], ema_decay=None, init="data", dead_threshold=0.0),
    ]),
}
FAMILY = ["residual_reset", "residual_off", "residual_learned", "fsq", "lfq", "simvq", "multiscale_reset",
          "multiscale_off"]
SINGLE_EQUAL = ["residual_off", "residual_learned", "fsq", "lfq", "simvq", "multiscale_off"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_model(quantizer: dict) -> HierarchicalVQVAE:
    """The 2-level model; ``quantizer`` is the model's block, or ``{"per_level": [bottom, top]}`` blocks."""
    quantizer = dict(quantizer)
    per_level = quantizer.pop("per_level", None) or [None, None]
    own = [None if q is None else QuantizerConfig(**q) for q in per_level]
    config = HierarchicalConfig(
        image_size=16,
        in_channels=1,
        channels=16,
        blocks=1,
        res_channels=8,
        levels=[LevelConfig(downsample=2, codebook_size=32, dim=8, code_dim=4, quantizer=own[0]),
                LevelConfig(downsample=2, codebook_size=16, dim=8, quantizer=own[1])],
        quantizer=QuantizerConfig(**quantizer),
    )
    return HierarchicalVQVAE(config)


def data(seed: int = 0) -> torch.Tensor:
    """(STEPS, WORLD, BATCH, 1, 16, 16) images in [0, 1]: rank r trains on data[step, r]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(STEPS, WORLD, BATCH, 1, 4, 4, generator=g)  # smooth-ish images: upsampled noise
    return torch.nn.functional.interpolate(base.flatten(0, 2), size=16, mode="bilinear").view(STEPS, WORLD, BATCH, 1, 16, 16)


def train(quantizer: dict, batches: list[torch.Tensor], ddp: DistInfo | None = None) -> dict[str, torch.Tensor]:
    """Train the tiny model ``len(batches)`` SGD steps; returns its state (parameters and codebook buffers).

    In float64, so that the rounding differences between one process and several (batch sizes, the order of
    the gradient all-reduce) stay far below the gaps between code distances and no code index flips.
    """
    torch.manual_seed(0)
    model = tiny_model(quantizer).double()
    net = wrap_ddp(model, ddp) if ddp is not None else model
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for x in batches:
        out = net(x.double())
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def codebook_updates(z: list[torch.Tensor], indices: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """EMA updates of a lone Codebook (no model) fed the given rows and codes."""
    torch.manual_seed(1)
    book = Codebook(8, 3, ema_decay=0.9, init="random", dead_threshold=0)
    for zz, ii in zip(z, indices):
        book.update(zz, ii)
    return {k: v.clone() for k, v in book.state_dict().items()}


def codebook_data(step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 * step + rank)
    n = 20 + 7 * rank  # ranks may hold different numbers of rows
    return torch.randn(n, 3, generator=g), torch.randint(0, 8, (n,), generator=g)


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        info = DistInfo(rank=rank, world_size=WORLD)
        x = data()
        result = {}
        for name, q in SCENARIOS.items():
            result[name] = train(q, [x[s, rank] for s in range(STEPS)], info)
            result[f"{name}_rng"] = torch.get_rng_state()
        pairs = [codebook_data(s, rank) for s in range(3)]
        result["codebook"] = codebook_updates([p[0] for p in pairs], [p[1] for p in pairs])
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Run the 2-process job once; the states each rank ended with."""
    out = tmp_path_factory.mktemp("ddp")
    ctx = mp.start_processes(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD}-process gloo job did not finish within {LAUNCH_TIMEOUT_S} s (hang?)")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("scenario", ["reset_on", "warmup_mean"])
def test_codebooks_are_bitwise_identical_on_every_rank(ranks, scenario):
    a, b = ranks[0][scenario], ranks[1][scenario]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs between ranks"
    # the scenario did exercise what it claims: initialised codebooks, and dead codes re-seeded during training
    assert all(bool(a[f"vq.{i}.codebook.initialized"]) for i in range(2))
    assert sum(int(a[f"vq.{i}.codebook.reset_count"].sum()) for i in range(2)) > 0
    # every rank made the same random draws (rank 0's were used): the streams stay in step, so resuming from
    # rank 0's saved random state continues every rank exactly
    assert torch.equal(ranks[0][f"{scenario}_rng"], ranks[1][f"{scenario}_rng"])
    if scenario == "warmup_mean":
        assert all(int(a[f"vq.{i}.codebook.warmup_seen"]) == 2 for i in range(2))


def test_codebooks_equal_one_process_on_the_concatenated_batches(ranks):
    x = data()
    quantizer = SCENARIOS["reset_off"]
    single = train(quantizer, [torch.cat([x[s, r] for r in range(WORLD)]) for s in range(STEPS)])
    only_rank0 = train(quantizer, [x[s, 0] for s in range(STEPS)])
    for rank in ranks:
        state = rank["reset_off"]
        for i in range(2):
            for name in ("weight", "ema_count", "ema_sum", "usage_window"):
                key = f"vq.{i}.codebook.{name}"
                torch.testing.assert_close(state[key], single[key], rtol=1e-9, atol=1e-9, msg=key)
        # and not those of a process that saw only its own shard (the all-reduce matters)
        assert not torch.allclose(state["vq.0.codebook.ema_count"], only_rank0["vq.0.codebook.ema_count"], atol=1e-3)


def test_lone_codebook_ema_equals_single_process(ranks):
    pairs = [[codebook_data(s, r) for r in range(WORLD)] for s in range(3)]
    single = codebook_updates([torch.cat([p[0] for p in ps]) for ps in pairs], [torch.cat([p[1] for p in ps]) for ps in pairs])
    for rank in ranks:
        for key in ("weight", "ema_count", "ema_sum", "usage_window"):
            torch.testing.assert_close(rank["codebook"][key], single[key], rtol=1e-6, atol=1e-6, msg=key)


def test_torchrun_train_and_resume(tmp_path, tiny_run_config):
    """`torchrun --nproc-per-node 2 -m hiervq train`: one log, one set of files, a complete run directory, resume."""
    import yaml

    import hiervq

    tiny_run_config["train"]["epochs"] = 2
    tiny_run_config["train"]["schedule"] = "constant"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}", "-m", "hiervq"]

    def launch(*args: str) -> str:
        proc = subprocess.run(
            [*launcher, "train", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S
        )
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        return log

    first = launch(str(config), "--out", str(run), "--set", "train.epochs=1")
    assert first.count("model hvqvae:") == 1 and first.count("epoch 1 [all]") == 1, first[-3000:]
    assert first.count("done:") == 1
    assert load_step(run) > 0
    steps_per_epoch = load_step(run)
    # 96 images on 2 ranks with batches of 16: 3 steps per epoch on each rank (not 6: the data is sharded)
    assert steps_per_epoch == 96 // WORLD // 16

    second = launch("--resume", str(run), "--set", "train.epochs=2")
    assert second.count("resuming at") == 1 and second.count("epoch 2 [all]") == 1, second[-3000:]
    assert "epoch 1 [all]" not in second
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "reconstructions.png", "curves.png", "usage.png",
                 "report.md", "model/config.json", "model/model.safetensors", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")], "no temporary files left behind"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and "val" in lines[-1]
    assert load_step(run) == 2 * steps_per_epoch
    summary = json.loads((run / "summary.json").read_text())
    assert summary["bits_per_image"] == hiervq.load(run).budget().bits_per_image


def scenario_kinds(name: str) -> set[str]:
    q = SCENARIOS[name]
    return {p.get("kind", "vq") for p in q.get("per_level") or [q]}


def test_the_scenarios_cover_every_quantizer_kind():
    """Every kind a level can use runs under DDP here, in a scenario checked for identity across ranks and in
    one checked against a single process."""
    from hiervq.models.base import QUANTIZER_KINDS

    identical = {"reset_on", "warmup_mean", *FAMILY}
    single = {"reset_off", *SINGLE_EQUAL}
    assert set().union(*(scenario_kinds(n) for n in identical)) == set(QUANTIZER_KINDS)
    assert set().union(*(scenario_kinds(n) for n in single)) == set(QUANTIZER_KINDS)


@pytest.mark.parametrize("scenario", FAMILY)
def test_quantizer_family_is_bitwise_identical_on_every_rank(ranks, scenario):
    a, b = ranks[0][scenario], ranks[1][scenario]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs between ranks"
    assert torch.equal(ranks[0][f"{scenario}_rng"], ranks[1][f"{scenario}_rng"])
    if scenario in ("residual_reset", "multiscale_reset"):
        assert sum(int(v.sum()) for k, v in a.items() if k.endswith("reset_count")) > 0, "resets were exercised"


@pytest.mark.parametrize("scenario", SINGLE_EQUAL)
def test_quantizer_family_equals_one_process_on_the_concatenated_batches(ranks, scenario):
    """Parameters and codebooks after DDP equal one process on the concatenated batches: gradients, EMA
    statistics, dropout draws and LFQ's batch entropy are all those of the global batch."""
    x = data()
    quantizer = SCENARIOS[scenario]
    single = train(quantizer, [torch.cat([x[s, r] for r in range(WORLD)]) for s in range(STEPS)])
    for rank in ranks:
        state = rank[scenario]
        assert state.keys() == single.keys()
        for key in state:
            if state[key].is_floating_point():
                torch.testing.assert_close(state[key], single[key], rtol=1e-7, atol=1e-9, msg=key)
            else:
                assert torch.equal(state[key], single[key]), key


def load_step(run: Path) -> int:
    from hiervq.train import load_checkpoint

    return int(load_checkpoint(run / "checkpoints" / "last.pt")["step"])
