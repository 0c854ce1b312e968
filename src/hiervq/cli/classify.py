"""``hiervq classify`` (semi-supervised classification with fractions of the labels) and ``hiervq tiles``
(histology tile selection). Their flags; the commands themselves are in :mod:`hiervq.cli.commands.classify`."""

from __future__ import annotations

from .common import add_command, add_output, add_writes

RUN = "hiervq.cli.commands.classify"  # the module of the commands as they run


def add_commands(sub) -> None:
    """Add ``classify`` and ``tiles`` to the ``hiervq`` subparsers."""
    p = add_command(
        sub, "classify", f"{RUN}:cmd_classify", "pretrain on unlabeled images, then classify with fractions of the labels",
        "Pretrain the config's model (or reuse --pretrained RUN / a finished OUT/pretrain), train an MLP "
        "head on its features for every label fraction and every classify.models row (plus raw pixels), select the "
        "epoch on the validation split and write OUT/results.json and OUT/report.md.",
    )
    p.add_argument("config", help="YAML config with a classify: section (e.g. configs/svqvae-dual-pbc.yaml)")
    p.add_argument("--fractions", help="comma-separated label fractions (default classify.fractions), e.g. 1,0.5,0.1,0.01")
    p.add_argument("--pretrained", metavar="RUN", help="use this finished run instead of pretraining")
    p.add_argument("--finetune", action="store_true",
                   help="fine-tune the pretrained model with the head (rows given as a bare path; default: frozen)")
    p.add_argument("--augment", action="store_true",
                   help="random flips and 90-degree rotations of the training images (classify.head.augment)")
    add_writes(p, "redo the classification (a finished OUT/pretrain is kept)")

    p = add_command(
        sub, "tiles", f"{RUN}:cmd_tiles", "cut slide images into tiles and keep those with tissue in focus",
        "Cut each image into SIZE x SIZE tiles and keep those whose pixel std >= --min-std and whose "
        "Laplacian variance >= --min-laplacian; the kept tiles are written as PNGs (a flat folder for data.name: folder).",
    )
    p.add_argument("images", nargs="+", help="slide images (PNG/JPEG/TIFF)")
    add_output(p, "output folder", required=True)
    p.add_argument("--size", type=int, default=512, help="tile side in pixels (default 512)")
    p.add_argument("--stride", type=int, help="pixels between tiles (default: the size, no overlap)")
    p.add_argument("--min-std", type=float, default=10.0, help="minimum pixel standard deviation, 0-255 (default 10)")
    p.add_argument("--min-laplacian", type=float, default=20.0, help="minimum Laplacian variance (default 20)")
