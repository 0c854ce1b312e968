"""Speed and peak memory of hiervq's ResidualVQ, FSQ and LFQ vs vector-quantize-pytorch at the same options.

Rows (issue 17), all on (1, N, 64) channel-last inputs with N = 32768:

* ``residual``: 4 stages, K = 1024 per stage, dim 64 (no projection), separate EMA codebooks (decay 0.99),
  commitment 0.25, random codebook init, no dead-code reset, no quantizer dropout;
* ``fsq``: levels [8, 5, 5, 5], dim 64 projected to 4 channels and back;
* ``lfq``: 10 bits (K = 1024), dim 64 projected to 10 channels and back, entropy weight 0.1, diversity 1,
  commitment 0.25, inverse temperature 100 (vector-quantize-pytorch's default).

Modes: ``train`` (forward, loss = sum(quantized * g) + the layer's own losses, backward; EMA updates included)
and ``encode`` (indices only, no gradients: ``encode`` here, the eval-mode forward under ``no_grad`` there).

* time: the two libraries run round-robin in one process (machine load hits them alike) after warm-up steps;
  the median over ``--repeats`` steps is reported, in ms;
* peak memory: one fresh subprocess per (row, mode, library) with glibc told to serve allocations of 64 KiB or
  more by mmap (``MALLOC_MMAP_THRESHOLD_=65536``) so freed tensors leave the process at once; after one warm-up
  step the kernel's resident high-water mark is reset (``/proc/self/clear_refs`` <- 5) and the reported number
  is VmHWM after one more step minus VmRSS just before it, in MiB (the method of quantizer_speed.py);
* ``threads``: torch threads (and OMP_NUM_THREADS of the memory subprocesses).

Output: ``benchmarks/results/quantizer_family.json``, a list of
``{"kind", "n", "mode", "hiervq_ms", "vqp_ms", "hiervq_peak_mb", "vqp_peak_mb", "threads"}``.

Usage:

    OMP_NUM_THREADS=1 python benchmarks/quantizer_family.py --threads 1   # the committed numbers (~7 min)
    python benchmarks/quantizer_family.py --quick         # tiny sizes, a smoke test; writes to /tmp by default
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "quantizer_family.json"
QUICK_RESULTS = Path("/tmp/quantizer_family_quick.json")
DIM, DECAY, BETA = 64, 0.99, 0.25
ROWS = [("residual", "train"), ("residual", "encode"), ("fsq", "train"), ("fsq", "encode"), ("lfq", "train"),
        ("lfq", "encode")]


def sizes(quick: bool) -> dict:
    """N and the residual K (full: the issue's; quick: tiny)."""
    return {"n": 512, "k": 64} if quick else {"n": 32768, "k": 1024}


# ---------------------------------------------------------------------------------------------- the contenders
def make_layer(impl: str, kind: str, k: int):
    if impl == "hiervq":
        from hiervq.quantize import FSQ, LFQ, ResidualVQ

        if kind == "residual":
            return ResidualVQ(DIM, k, 4, beta=BETA, ema_decay=DECAY, init="random", dead_threshold=0)
        if kind == "fsq":
            return FSQ(DIM, [8, 5, 5, 5])
        return LFQ(DIM, 10, beta=BETA, entropy_weight=0.1, diversity=1.0, inv_temperature=100.0)
    import vector_quantize_pytorch as vqp

    if kind == "residual":
        return vqp.ResidualVQ(dim=DIM, num_quantizers=4, codebook_size=k, decay=DECAY, commitment_weight=BETA,
                              kmeans_init=False, threshold_ema_dead_code=0)
    if kind == "fsq":
        return vqp.FSQ(levels=[8, 5, 5, 5], dim=DIM)
    return vqp.LFQ(dim=DIM, codebook_size=1024, entropy_loss_weight=0.1, commitment_loss_weight=BETA,
                   diversity_gamma=1.0)


def _aux_loss(out) -> torch.Tensor:
    """The layer's own loss terms, summed, from either library's result."""
    if hasattr(out, "loss"):  # hiervq's Quantized
        return out.loss
    total = torch.zeros(())
    for item in list(out)[2:]:  # vqp: (quantized, indices, loss...) ; FSQ has no loss
        if isinstance(item, torch.Tensor) and item.is_floating_point():
            total = total + item.sum()
    return total


def make_step(impl: str, kind: str, mode: str, n: int, k: int, seed: int = 0):
    """A zero-argument callable running one step of ``impl`` on the row."""
    torch.manual_seed(seed)
    layer = make_layer(impl, kind, k)
    x = torch.randn(1, n, DIM)
    g = torch.randn(1, n, DIM)
    if mode == "train":
        layer.train()

        def step():
            xi = x.detach().requires_grad_(True)
            out = layer(xi)
            q = out.quantized if hasattr(out, "quantized") else out[0]
            ((q * g).sum() + _aux_loss(out)).backward()

    else:
        layer.eval()

        def step():
            with torch.no_grad():
                return layer.encode(x) if impl == "hiervq" else layer(x)[1]

    return step


# ---------------------------------------------------------------------------------------------- time
def time_row(kind: str, mode: str, n: int, k: int, repeats: int, warmup: int) -> dict:
    steps = {impl: make_step(impl, kind, mode, n, k) for impl in ("hiervq", "vqp")}
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {impl: [] for impl in steps}
    for _ in range(repeats):
        for impl, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[impl].append((time.perf_counter() - t0) * 1e3)
    return {f"{impl}_ms": round(statistics.median(ts), 3) for impl, ts in times.items()}


# ---------------------------------------------------------------------------------------------- memory
def _status_mib(key: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) / 1024.0


def peak_one(impl: str, kind: str, mode: str, n: int, k: int) -> float:
    """Peak extra resident memory (MiB) of one step (in a fresh subprocess, see the module docstring)."""
    import gc

    step = make_step(impl, kind, mode, n, k)
    step()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    base = _status_mib("VmRSS")
    step()
    return _status_mib("VmHWM") - base


def measure_peak(impl: str, kind: str, mode: str, n: int, k: int, threads: int) -> float:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--peak-one", impl, kind, mode, str(n), str(k), "--threads", str(threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"peak measurement failed for {impl} {kind} {mode}:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: check that the script runs")
    p.add_argument("--repeats", type=int, default=None, help="timed steps per library (default 15, quick 2)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--out", default=None, help=f"default {RESULTS} ({QUICK_RESULTS} with --quick)")
    p.add_argument("--peak-one", nargs=5, metavar=("IMPL", "KIND", "MODE", "N", "K"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.peak_one:
        impl, kind, mode, n, k = args.peak_one
        print(f"{peak_one(impl, kind, mode, int(n), int(k)):.3f}")
        return 0
    size = sizes(args.quick)
    repeats = args.repeats or (2 if args.quick else 15)
    warmup = 1 if args.quick else args.warmup
    records = []
    for kind, mode in ROWS:
        rec = {"script": "benchmarks/quantizer_family.py", "kind": kind, "n": size["n"], "mode": mode}
        rec.update(time_row(kind, mode, size["n"], size["k"], repeats, warmup))
        for impl in ("hiervq", "vqp"):
            rec[f"{impl}_peak_mb"] = (None if args.no_memory
                                      else round(measure_peak(impl, kind, mode, size["n"], size["k"], args.threads), 2))
        rec["threads"] = args.threads
        records.append(rec)
        print(json.dumps(rec), flush=True)
    out = Path(args.out) if args.out else (QUICK_RESULTS if args.quick else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    from hiervq.io import atomic_write_bytes

    atomic_write_bytes(out, (json.dumps(records, indent=1) + "\n").encode())
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
