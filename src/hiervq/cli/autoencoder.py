"""``hiervq train``, ``eval``, ``encode`` and ``decode``: train an autoencoder, measure it, turn images into codes
and back. Their flags; the commands themselves are in :mod:`hiervq.cli.commands.autoencoder`."""

from __future__ import annotations

from .common import (
    add_batch_size,
    add_command,
    add_image_options,
    add_out,
    add_output,
    add_overwrite,
    add_recursive,
    add_run,
    add_set,
)

RUN = "hiervq.cli.commands.autoencoder"  # the module of the commands as they run


def add_commands(sub) -> None:
    """Add ``train``, ``eval``, ``encode`` and ``decode`` to the ``hiervq`` subparsers."""
    p = add_command(sub, "train", f"{RUN}:cmd_train", "train a model from a YAML config (or resume a run)",
                    "Train a model from a YAML config; under torchrun, train on every process with DDP.")
    p.add_argument("config", nargs="?",
                   help="YAML config file, or the name of a shipped recipe (`hiervq configs` lists them: demo, "
                        "vqvae-mnist, ...); omitted: the defaults")
    add_set(p, "override a config key, e.g. train.epochs=5")
    add_out(p, "run directory (default runs/<config name>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    add_overwrite(p, "replace an existing run directory")

    p = add_command(sub, "eval", f"{RUN}:cmd_eval", "evaluate a trained run on its test split (or other data)",
                    "Evaluate a trained run: MSE, PSNR, SSIM, MS-SSIM (means and stds over images), "
                    "loss terms and codebook health, as JSON on stdout.")
    add_run(p)
    p.add_argument("--data", help="evaluate on this dataset instead (.npz, MNIST folder, CIFAR batches, image folder)")
    p.add_argument("--resize", action="store_true",
                   help="bring the images of a --data folder to the model's training size (data.fit) instead of "
                        "evaluating each at its own size")
    p.add_argument("--split", choices=["test", "val", "train", "all"],
                   help="which images (default: test; all of them for an image folder given with --data, which has no "
                        "test split of its own)")
    add_set(p, "override a data key, e.g. data.test_limit=100")
    p.add_argument("--metric", action="append", metavar="MODULE:FACTORY",
                   help="add a perceptual metric built by FACTORY() from a module or a .py file (repeatable; LPIPS- or "
                        "FID-like networks whose weights you have locally: see hiervq.metrics.perceptual)")
    add_output(p, "also write the result JSON here")
    add_overwrite(p, "replace the -o file if it exists")

    p = add_command(sub, "encode", f"{RUN}:cmd_encode", "turn images into codes (codes.npz)",
                    "Encode images into codes, one array per level (level0 = bottom), with their names and sizes. "
                    "Each image is coded at its own size (padded to the model's stride; `decode` crops back), so "
                    "the images of one call must share a size; --resize brings them to the model's training size. "
                    "A folder stands for the images at its top level; with -r for every image below it, each named "
                    "by its path below the folder (cats/a.png), which `decode` writes back as the same tree.")
    add_run(p, "run directory, saved model directory or tokenizer name (`hiervq models`)")
    p.add_argument("images", nargs="+", help="image files or folders of images")
    add_output(p, "output .npz (level0, level1, ..., names, image_sizes)", "codes.npz")
    add_recursive(p, "read every image below each folder (sub-folders too; hidden files and folders skipped), each "
                     "named by its path below the folder (cats/a.png); two images that would decode to one PNG are "
                     "refused")
    add_image_options(p)
    add_batch_size(p, 256)
    add_overwrite(p, "replace the -o file if it exists (never an input image)")

    p = add_command(sub, "decode", f"{RUN}:cmd_decode", "turn codes (codes.npz) back into images",
                    "Decode a codes file written by `hiervq encode` into one PNG per image (plus grid.png), cropped "
                    "to each image's recorded size (image_sizes; older files decode at the size of their grids). "
                    "Names with folders (written by `hiervq encode -r`) keep them: cats/a.png -> OUT/cats/a.png; "
                    "names that would leave OUT ('..', absolute paths) are refused.")
    add_run(p, "run directory, saved model directory or tokenizer name (`hiervq models`)")
    p.add_argument("codes", help=".npz written by `hiervq encode`")
    add_output(p, "output folder (one PNG per image, plus grid.png)", "decoded")
    add_overwrite(p, "replace PNGs that already exist in the output folder")
