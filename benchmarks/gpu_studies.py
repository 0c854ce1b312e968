"""The three half-reproduced studies at their published schedules on one GPU (issue 29), each in at most
``--budget-s`` seconds (600 by default), writing the CPU benchmarks' own JSON keys plus ``"device"``.

Each study is its CPU benchmark run in a subprocess with the published schedule as overrides; what bounds its time
is ``train.time_limit`` on every run (the budget shared among the runs a study trains at once), and a hard
subprocess timeout a little above the budget (the benchmarks write their JSON as rows finish, so a timeout keeps
what finished). A run that the limit cut says so (``"stopped": "time_limit"`` in its ``metrics.jsonl``; the
estimator study's per-seed ``curve`` is then shorter than ``settings.epochs``), so a cut schedule is never
reported as the published one.

* ``estimators``: ``benchmarks/estimators_cifar10.py --faithful`` with ``train.epochs=100`` (the paper's ~100), the
  12 runs ``--workers`` at a time -> ``estimators_cifar10.json``;
* ``svqvae``: ``benchmarks/label_fractions_pbc.py`` with 100 fine-tuning epochs (``classify.head.epochs=100``, the
  published protocol) at 32x32 -> ``label_fractions_pbc.json``;
* ``pqvae``: ``benchmarks/recon_pqvae.py`` at the published size (512 channels, 3 blocks, lr 1e-3) for
  ``--pq-epochs`` epochs, PQ-VAE and the plain VQ-VAE -> ``recon_pqvae_equal_steps_published_gpu.json``.

Results go to ``--results`` (default ``benchmarks/results/gpu/``), runs to ``--runs``. Each JSON gets ``"device"``
(the GPU's name, or ``cpu``), ``"driver"`` (this script and its command), ``"budget_s"``, ``"wall_s"`` and
``"timed_out"``. Never needed by the CPU path; on a machine without a GPU it runs on the CPU (use ``--smoke`` there:
a few images and epochs, to check the plumbing)::

    python benchmarks/gpu_studies.py --study all --workers 6          # one GPU, ~30 minutes in all
    python benchmarks/gpu_studies.py --smoke --results /tmp/gpu --runs /tmp/gpu/runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from hiervq.io import atomic_write_bytes  # noqa: E402

STUDIES = ("estimators", "svqvae", "pqvae")
#: per study: the JSON file it writes (under --results)
OUTPUTS = {"estimators": "estimators_cifar10.json", "svqvae": "label_fractions_pbc.json",
           "pqvae": "recon_pqvae_equal_steps_published_gpu.json"}
#: the smoke scale: tiny data, one or two epochs (plumbing only; the numbers mean nothing)
SMOKE = ["data.train_limit=256", "data.test_limit=64", "train.eval_limit=32"]


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def commands(study: str, args) -> list[list[str]]:
    """The benchmark command lines of ``study`` (argv lists, run from the repository root)."""
    py, results, runs = sys.executable, Path(args.results), Path(args.runs)
    out = str(results / OUTPUTS[study])
    smoke = [f"--set={s}" for s in SMOKE] if args.smoke else []
    if study == "estimators":
        runs_total = 12
        limit = max(args.budget_s * min(args.workers, runs_total) / runs_total * 0.85, 1.0)
        epochs = 2 if args.smoke else 100
        return [[py, "benchmarks/estimators_cifar10.py", "--faithful", "--workers", str(args.workers),
                 "--runs", str(runs), "--output", out, f"--set=train.epochs={epochs}",
                 f"--set=train.time_limit={limit:.0f}", *smoke]]
    if study == "svqvae":
        epochs = 2 if args.smoke else 100
        sets = ["data.image_size=32", f"classify.head.epochs={epochs}", f"classify.head.evals={min(epochs, 20)}"]
        if args.smoke:
            sets += ["data.train_limit=256", "data.test_limit=64", "classify.head.min_steps=1",
                     "classify.seeds=1", "classify.seeds_full=1"] + [
                f"train.phases.{i}.epochs=1" for i in range(5)]
        return [[py, "benchmarks/label_fractions_pbc.py", "--out", str(runs / "label_fractions_pbc"), "--result", out,
                 *[f"--set={s}" for s in sets]]]
    if study == "pqvae":
        epochs = 1 if args.smoke else args.pq_epochs
        size = [] if args.smoke else ["model.channels=512", "model.latent_channels=512", "model.blocks=3",
                                      "model.res_channels=128"]
        limit = max(args.budget_s / 4 * 0.85, 1.0)  # 2 datasets x 2 models, one after another
        sets = [f"train.epochs={epochs}", "train.lr=1e-3", f"train.time_limit={limit:.0f}", *size]
        return [[py, "benchmarks/recon_pqvae.py", "--threads", str(args.threads), "--tag", "published_gpu",
                 "--models", "pqvae,vqvae_plain", "--runs", str(runs / "pqvae-published"),
                 "--results", str(results), *[f"--set={s}" for s in sets + (SMOKE if args.smoke else [])]]]
    raise ValueError(study)


def stamp(path: Path, extra: dict) -> None:
    """Add the driver's keys to a written result JSON (a dict, or every row of a list)."""
    if not path.is_file():
        return
    data = json.loads(path.read_text())
    rows = data if isinstance(data, list) else [data]
    for row in rows:
        row.update(extra)
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="all", choices=(*STUDIES, "all"))
    parser.add_argument("--budget-s", type=float, default=600.0, help="seconds per study")
    parser.add_argument("--workers", type=int, default=6, help="estimator runs at a time (they share the GPU)")
    parser.add_argument("--threads", type=int, default=4, help="CPU threads of the PQ-VAE runs")
    parser.add_argument("--pq-epochs", type=int, default=20, help="PQ-VAE epochs (the time limit may cut them)")
    parser.add_argument("--results", default="benchmarks/results/gpu")
    parser.add_argument("--runs", default="runs/gpu")
    parser.add_argument("--smoke", action="store_true", help="tiny data and epochs: check the plumbing on any machine")
    args = parser.parse_args()
    Path(args.results).mkdir(parents=True, exist_ok=True)
    device = device_name()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    status = 0
    for study in STUDIES if args.study == "all" else (args.study,):
        t0 = time.time()
        timed_out = False
        for argv in commands(study, args):
            print("+", " ".join(argv), flush=True)
            try:
                rc = subprocess.run(argv, cwd=REPO, env=env, timeout=args.budget_s * 1.5 + 120).returncode
            except subprocess.TimeoutExpired:
                timed_out, rc = True, 124
            status = status or rc
        stamp(Path(args.results) / OUTPUTS[study], {
            "device": device, "driver": "benchmarks/gpu_studies.py", "driver_command": " ".join(sys.argv),
            "budget_s": args.budget_s, "wall_s": round(time.time() - t0, 1), "timed_out": timed_out,
            "smoke": args.smoke})
        print(f"{study}: {time.time() - t0:.0f} s on {device}" + (" (timed out)" if timed_out else ""), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
