"""Shared fixtures: tiny configs, the path to ../shared/data (tests that need it skip when it is absent)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_file(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


TINY_RUN = {
    "seed": 0,
    "data": {"name": "digits", "image_size": 16, "train_limit": 96, "test_limit": 32},
    "model": {
        "name": "hvqvae",
        "channels": 16,
        "blocks": 1,
        "res_channels": 8,
        "levels": [
            {"downsample": 2, "codebook_size": 32, "dim": 8, "code_dim": 4},
            {"downsample": 2, "codebook_size": 16, "dim": 8},
        ],
        "quantizer": {"init": "kmeans", "dead_threshold": 2, "dead_window": 2, "estimator": "rotation"},
    },
    "train": {"epochs": 2, "batch_size": 16, "lr": 0.002, "progress": False, "eval_batch_size": 64},
}


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one torch thread avoids OpenMP barrier waits on a loaded 2-core machine (10-70x faster
    here). Module-scoped, so a module's own run-building fixtures get it too; a module asks for it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_run_config():
    import copy

    return copy.deepcopy(TINY_RUN)


def tiny_rgb_run(root, prior_model: dict):
    """The tiny 2-level run of :data:`TINY_RUN` on 3-channel digits (16x16, stride 4; K = 32 below, 16 on top),
    trained for one epoch under ``root``, with an unconditional prior per level of ``prior_model`` (the priors'
    ``model:`` keys: PixelCNN keys give PixelCNNs, otherwise the default checkerboard). Returns the run folder."""
    import copy

    from hiervq.train import config_from_dict, train_run
    from hiervq.train.priors import prior_run

    raw = copy.deepcopy(TINY_RUN)
    raw["data"]["channels"] = 3
    raw["train"]["epochs"] = 1
    raw["priors"] = {"model": prior_model, "train": {"epochs": 1, "batch_size": 32, "lr": 0.01, "progress": False}}
    run = root / "run"
    train_run(config_from_dict(raw, "tiny-rgb"), run)
    for level in (0, 1):
        prior_run(run, level, log=lambda msg: None)
    return run


def codec_round_trip(run, n: int, grids: tuple, size: tuple[int, int]):
    """Compress the first ``n`` test images of ``run`` with its priors and check the round trip: the coded codes
    are the model's own, the codec gives them ``grids`` (top level first; a version 3 header records none, the
    size implies them), and decompression gives the same codes at ``size``. Returns ``(codec, result, x, codes)``
    for further checks."""
    import torch

    import hiervq
    from hiervq.codec import Codec, unpack
    from hiervq.data import load_data
    from hiervq.train import read_run_config

    model = hiervq.load(run)
    codec = Codec.from_run(run)
    x = load_data(read_run_config(run).data).test.batch(slice(0, n))[0]
    result = codec.compress_batch(x)
    with torch.no_grad():
        codes = model.codes_to_list(model.encode(x))
    assert all(torch.equal(a, b) for a, b in zip(result.codes, codes))
    assert tuple(codec.grids(*size)) == grids and unpack(result.files[0])[0].grids is None
    back, back_size = codec.decompress_codes(result.files)
    assert back_size == size and all(torch.equal(a, b) for a, b in zip(back, codes))
    old = old_format_files(codec, result.codes, size)  # format version 2 files still decode to the same codes
    assert unpack(old[0])[0].grids == grids
    assert all(torch.equal(a, b) for a, b in zip(codec.decompress_codes(old)[0], codes))
    return codec, result, x, codes


def old_format_files(codec, codes, image_size: tuple[int, int], version: int = 2) -> list[bytes]:
    """Files of format version 1 or 2 for a batch's ``codes`` (``codes_to_list`` layout, as ``compress_batch``
    gives them) of ``image_size`` images, built as hiervq wrote them before version 3: one rounding phase per image
    (the first robust at every position of every level) in the header's flags, the level grids and the payload
    length in the header, and no phases in the stream ([label], then the codes level by level)."""
    import numpy as np
    import torch

    from hiervq.codec import Header, pack, tables
    from hiervq.codec.coder import min_payload

    codes = [c.to(codec.device, torch.long) for c in codes]
    labels = codec._best_labels(codes) if codec.num_classes else None
    logits = codec._logits(codes, labels)
    symbols = [codec.kind.symbols(codec.priors[lv], codes, lv) for lv in codec.levels]
    floor = min_payload(sum(s.shape[1] for s in symbols))
    grids = tuple(codec.grids(*image_size))
    files = []
    for i in range(codes[0].shape[0]):
        phase = next(p for p in range(tables.PHASES) if all(bool(tables.robust(lg[i], p).all()) for lg in logits))
        syms = [s[i].cpu().numpy().astype(np.int32) for s in symbols]
        weights = [tables.weights(lg[i], phase).cpu().numpy() for lg in logits]
        if labels is not None:
            syms.insert(0, labels[i : i + 1].cpu().numpy().astype(np.int32))
            weights.insert(0, np.ones((1, codec.num_classes)))
        payload = codec._encode_stream(syms, weights)
        header = Header(codec.id, tuple(image_size), grids, phase, labels is not None, version)
        files.append(pack(header, payload + bytes(max(0, floor - len(payload)))))
    return files
