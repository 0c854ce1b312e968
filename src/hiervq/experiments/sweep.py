"""``hiervq sweep``: run a config over a grid of values and named variants, and tabulate the results.

Points are every combination of the ``sweep.grid`` axes (plus ``--grid`` ones) and the ``sweep.variants``. A
point is one training run, or, when the config has a ``compare:`` section, a capacity-matched comparison (two
runs). Output folder::

    OUT/points/NAME/          the point's run directory (or compare folder) and point.json once it is finished
    OUT/sweep.json, .csv      one row per trained model (per point, per architecture), rewritten after each point
    OUT/heatmap_*.png         PSNR and normalised perplexity over two axes (a line plot for a single axis)

A restarted sweep skips finished points (those with point.json) and resumes interrupted runs from their
checkpoints. Points can run in a few worker processes (``workers``), each with its share of torch's threads (``--threads N``, else torch's default).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import logging
import multiprocessing
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import layout
from ..errors import ConfigError, HierVQError
from ..io import atomic_write_bytes, read_json, write_json
from ..layout import RunDir
from ..metrics.plots import plot_heatmap, plot_series
from ..train.config import RunConfig, apply_overrides, config_from_dict, parse_value
from ..train.rundir import check_replaceable, mark_output_dir, record_written
from .compare import model_entry, run_compare, train_or_resume

logger = logging.getLogger(__name__)

VARIANT_AXIS = "variant"
PLOT_METRICS = ("psnr", "normalized_perplexity")


@dataclass
class SweepPoint:
    """One point: its directory name, its value on every axis, and the ``--set`` overrides that make it."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)


def parse_grid(items: list[str] | None) -> dict[str, list]:
    """``--grid key=v1,v2`` arguments -> {key: [v1, v2]} (values in YAML syntax: 3, 1e-3, null, rotation)."""
    grid: dict[str, list] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r}: expected key=value1,value2,..., e.g. model.quantizer.beta=0.1,1")
        key, text = item.split("=", 1)
        values = [parse_value(v.strip()) for v in text.split(",") if v.strip()]
        if not key.strip() or not values:
            raise ConfigError(f"--grid {item!r}: needs a key and at least one value")
        grid[key.strip()] = values
    return grid


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", text)


def _key_label(key: str) -> str:
    return key.removeprefix("model.").replace("*", "all")


def _value_text(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def expand_points(grid: dict[str, list], variants: dict[str, list[str]]) -> list[SweepPoint]:
    """Every combination of the grid values with every variant (variants first, in their order)."""
    keys = list(grid)
    combos = list(itertools.product(*(grid[k] for k in keys))) if keys else [()]
    named = list(variants.items()) or [(None, [])]
    points = []
    for vname, vover in named:
        for combo in combos:
            values: dict[str, Any] = {}
            parts = []
            if vname is not None:
                values[VARIANT_AXIS] = vname
                parts.append(vname)
            overrides = list(vover)
            for k, v in zip(keys, combo):
                values[k] = v
                overrides.append(f"{k}={json.dumps(v)}")
                parts.append(f"{_key_label(k)}={_value_text(v)}")
            points.append(SweepPoint(_slug("__".join(parts)) or "base", values, overrides))
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ConfigError(f"sweep points have clashing names: {sorted({n for n in names if names.count(n) > 1})}")
    return points


def expand_wildcards(raw: dict[str, Any], overrides: list[str]) -> list[str]:
    """Replace each ``*`` component of an override key by every index of the list it stands for."""
    out = []
    for item in overrides:
        key, value = item.split("=", 1)
        if "*" not in key.split("."):
            out.append(item)
            continue
        stack = [([], raw, key.split("."))]
        while stack:
            done, node, rest = stack.pop()
            if not rest:
                out.append(".".join(done) + "=" + value)
                continue
            head, tail = rest[0], rest[1:]
            if head == "*":
                if not isinstance(node, list):
                    raise ConfigError(f"{key}: '*' must stand for the items of a list, {'.'.join(done)} is not one")
                stack += [(done + [str(i)], node[i], tail) for i in reversed(range(len(node)))]
            else:
                child = node.get(head) if isinstance(node, dict) else (
                    node[int(head)] if isinstance(node, list) and head.isdigit() and int(head) < len(node) else None)
                stack.append((done + [head], child, tail))
    return out


def point_config(base: RunConfig, point: SweepPoint) -> RunConfig:
    """``base`` without its ``sweep:`` section, with the point's overrides applied and validated."""
    raw = base.to_dict()
    raw.pop("sweep", None)
    raw = apply_overrides(raw, expand_wildcards(raw, point.overrides))
    return config_from_dict(raw, f"{base.source} [point {point.name}]")


def run_point(config: RunConfig, point_dir: str | Path) -> list[dict[str, Any]]:
    """Run one point (a training run, or a comparison when ``config.compare`` is set); returns its rows."""
    point_dir = Path(point_dir)
    if config.compare is not None:
        result = run_compare(config, point_dir)
        return [{"arch": arch, **result[arch]} for arch in layout.COMPARE_RUNS]
    summary = train_or_resume(config, point_dir)
    return [{"arch": summary["model"], **model_entry(summary)}]


def _without_none(value: Any) -> Any:
    """``value`` with every dict key whose value is None dropped, recursively (lists keep their Nones)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def dict_hash(raw: dict[str, Any], unset: bool = False) -> str:
    """The SHA-256 of a config dict (canonical JSON). Keys whose value is None (an optional setting left unset)
    are left out, so that a key a later hiervq adds with a None default keeps the hashes of the points finished
    before it; ``unset=True`` keeps them (the hash point.json held before: ``config_hash`` there, now
    ``config_key``)."""
    text = json.dumps(raw if unset else _without_none(raw), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def config_hash(config: RunConfig, unset: bool = False) -> str:
    """:func:`dict_hash` of a point's full resolved config: what a finished ``point.json`` is reused for, and
    nothing else."""
    return dict_hash(config.to_dict(), unset)


def ran_config(record: dict, config: RunConfig) -> bool:
    """Whether a finished point's record (point.json) ran ``config``: its ``config_key`` (None-valued keys left
    out) matches, or, for a point written before that key existed, its ``config_hash`` (every key)."""
    if "config_key" in record:
        return record["config_key"] == config_hash(config)
    return record.get("config_hash") == config_hash(config, unset=True)


def _last_train_stats(run_dir: Path) -> dict[str, Any]:
    history = RunDir(run_dir).read_metrics()
    return history[-1].get("train", {}) if history else {}


def _point_job(raw: dict[str, Any], source: str, point: dict[str, Any], point_dir: str, threads: int | None) -> dict:
    """Worker entry point: rebuild the config, run the point, write point.json; returns the point record."""
    if threads:
        torch.set_num_threads(threads)
    base = config_from_dict(raw, source)
    sp = SweepPoint(**point)
    config = point_config(base, sp)
    rows = run_point(config, point_dir)
    for row in rows:
        run_dir = Path(point_dir) / row["arch"] if config.compare is not None else Path(point_dir)
        row["train_final"] = _last_train_stats(run_dir)
    record = {"name": sp.name, "values": sp.values, "overrides": sp.overrides, "config_key": config_hash(config),
              "rows": rows}
    write_json(Path(point_dir) / layout.POINT_FILE, record)
    return record


def run_sweep(
    config: RunConfig,
    out_dir: str | Path,
    grid: dict[str, list] | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    keep: Callable[[SweepPoint], bool] | None = None,
) -> dict[str, Any]:
    """Run every point of ``config``'s sweep (``grid`` adds or replaces axes), skipping finished ones; ``keep``
    selects the points to run (e.g. fewer seeds for some variants; default: all).

    Returns the table written to ``sweep.json``: ``{"axes": {axis: values}, "points": [...], "rows": [...]}``.
    """
    sweep = config.sweep
    full_grid = dict(sweep.grid if sweep else {})
    full_grid.update(grid or {})
    variants = dict(sweep.variants if sweep else {})
    workers = workers or (sweep.workers if sweep else 1)
    points = [p for p in expand_points(full_grid, variants) if keep is None or keep(p)]
    for p in points:  # validate every point before training any
        point_config(config, p)
    out_dir = Path(out_dir)
    header = f"sweep: {len(points)} points -> {out_dir}"
    if dry_run:  # the list of points is the result of a dry run
        print(header)
        for p in points:
            print(f"  {p.name}: {' '.join(p.overrides) or '(base config)'}")
        return {"axes": _axes(full_grid, variants), "points": [], "rows": []}
    if overwrite and out_dir.exists():
        check_replaceable(out_dir, "sweep output folder")
        shutil.rmtree(out_dir)
    since = time.time_ns()  # what this call writes into out_dir goes into its manifest (train.rundir)
    mark_output_dir(out_dir)
    logger.info(header)

    records: dict[str, dict] = {}
    todo = []
    for p in points:
        done = out_dir / layout.SWEEP_POINTS / p.name / layout.POINT_FILE
        if done.is_file():
            record = read_json(done)
            if not ran_config(record, point_config(config, p)):  # reused only for the very config it ran
                stored = "config_key" in record or "config_hash" in record
                raise HierVQError(
                    f"{done}: this finished point ran another config than point {p.name!r} of {config.source} "
                    f"({'its hash differs' if stored else 'no config hash: written by an older hiervq'}"
                    "); pass --overwrite to run the sweep again, or choose another --out")
            records[p.name] = record
            logger.info(f"  {p.name}: finished, skipped")
        else:
            todo.append(p)
    raw, source = config.to_dict(), config.source
    axes = _axes(full_grid, variants)

    def finished(record: dict) -> None:
        records[record["name"]] = record
        write_table(out_dir, axes, [records[p.name] for p in points if p.name in records])
        logger.info(f"  {record['name']}: done")

    jobs = [(raw, source, p.__dict__, str(out_dir / layout.SWEEP_POINTS / p.name)) for p in todo]
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            finished(_point_job(*job, None))
    else:
        threads = max(1, torch.get_num_threads() // workers)  # --threads N (or torch's default) shared out
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_point_job, *job, threads) for job in jobs]
            for fut in as_completed(futures):
                finished(fut.result())
    table = write_table(out_dir, axes, [records[p.name] for p in points if p.name in records])
    record_written(out_dir, since)
    return table


def _axes(grid: dict[str, list], variants: dict[str, list[str]]) -> dict[str, list]:
    axes: dict[str, list] = {}
    if variants:
        axes[VARIANT_AXIS] = list(variants)
    axes.update(grid)
    return axes


CSV_COLUMNS = (
    "arch", "K", "D", "C", "continuous_budget", "discrete_budget", "psnr", "psnr_std", "mse", "mse_std",
    "perplexity", "normalized_perplexity", "used_fraction", "used_codes", "dead_codes", "bits_per_image",
    "params", "train_s",
)


def write_table(out_dir: Path, axes: dict[str, list], records: list[dict]) -> dict[str, Any]:
    """Write ``sweep.json``, ``sweep.csv`` and the plots for the finished point records; returns the table."""
    rows = []
    for rec in records:
        for row in rec["rows"]:
            rows.append({"point": rec["name"], **{a: rec["values"].get(a) for a in axes}, **row})
    table = {"axes": axes, "points": [r["name"] for r in records], "rows": rows}
    write_json(out_dir / layout.SWEEP_RESULT, table)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    loss_keys = sorted({k for r in rows for k in r.get("test_losses", {})})
    writer.writerow(["point", *axes, *CSV_COLUMNS, *(f"test_{k}" for k in loss_keys)])
    for r in rows:
        cells = [r["point"], *(r[a] for a in axes)]
        cells += ["+".join(map(str, r[c])) if isinstance(r[c], list) else r[c] for c in CSV_COLUMNS]
        cells += [r.get("test_losses", {}).get(k, "") for k in loss_keys]
        writer.writerow(cells)
    atomic_write_bytes(out_dir / layout.SWEEP_TABLE, buffer.getvalue().encode())
    if rows:
        plot_table(out_dir, axes, rows)
    return table


def plot_table(out_dir: Path, axes: dict[str, list], rows: list[dict]) -> None:
    """Heat maps of PSNR and normalised perplexity over the first two axes (one per architecture and value of
    any further axes), or line plots over a single axis."""
    names = list(axes)
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    if not names:
        return
    if len(names) == 1:
        axis = names[0]
        labels = [_value_text(v) for v in axes[axis]]
        for metric in PLOT_METRICS:
            series = {arch: [next((r[metric] for r in rows if r["arch"] == arch and r[axis] == v), np.nan)
                             for v in axes[axis]] for arch in archs}
            plot_series(labels, series, out_dir / f"{metric}.png", _key_label(axis), metric)
        return
    ya, xa, rest = names[0], names[1], names[2:]
    for arch in archs:
        for combo in itertools.product(*(axes[a] for a in rest)):
            fixed = dict(zip(rest, combo))
            sub = [r for r in rows if r["arch"] == arch and all(r[a] == v for a, v in fixed.items())]
            if not sub:
                continue
            suffix = "".join(f"__{_key_label(a)}={_value_text(v)}" for a, v in fixed.items())
            for metric in PLOT_METRICS:
                grid = np.full((len(axes[ya]), len(axes[xa])), np.nan)
                for r in sub:
                    grid[axes[ya].index(r[ya]), axes[xa].index(r[xa])] = r[metric]
                fmt = ".2f" if metric == "psnr" else ".3f"
                plot_heatmap(grid, axes[ya], axes[xa], out_dir / _slug(f"heatmap_{metric}_{arch}{suffix}.png"),
                             _key_label(xa), _key_label(ya), f"{arch}: {metric}{suffix.replace('__', ' ')}", fmt)
