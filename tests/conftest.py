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


def codec_round_trip(run, n: int, grids: tuple, size: tuple[int, int]):
    """Compress the first ``n`` test images of ``run`` with its priors and check the round trip: the coded codes
    are the model's own, the file header carries ``grids`` (top level first), and decompression gives the same
    codes at ``size``. Returns ``(codec, result, x, codes)`` for further checks."""
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
    assert unpack(result.files[0])[0].grids == grids
    back, back_size = codec.decompress_codes(result.files)
    assert back_size == size and all(torch.equal(a, b) for a, b in zip(back, codes))
    return codec, result, x, codes
