"""``hiervq compress`` and ``hiervq decompress``: images -> entropy-coded ``.hvq`` files with a run's autoencoder
and priors, and back to PNGs. Their flags; the commands themselves are in :mod:`hiervq.cli.commands.compress`."""

from __future__ import annotations

from .common import (
    add_batch_size,
    add_command,
    add_image_options,
    add_output,
    add_overwrite,
    add_priors,
    add_recursive,
    add_run,
)

RUN = "hiervq.cli.commands.compress"  # the module of the commands as they run


def add_commands(sub) -> None:
    """Add ``compress`` and ``decompress`` to the ``hiervq`` subparsers."""
    p = add_command(
        sub, "compress", f"{RUN}:cmd_compress", "compress images to .hvq files (codes entropy-coded with the run's priors)",
        "Encode images with a run's autoencoder and range-code the codes with its priors (train them "
        "first with `hiervq prior RUN --level all`): one .hvq file per image, at the image's own size (padded to the "
        "model's stride; `decompress` crops back; --resize brings images to the model's training size as `hiervq "
        "encode --resize` does). A folder stands for the images at its top level; with -r for every image below it, "
        "the output folder mirroring its tree (photos/cats/a.jpg -> OUT/cats/a.hvq). Format and determinism: "
        "docs/compression.md.",
    )
    add_run(p, "autoencoder run directory (with priors under RUN/priors/)")
    p.add_argument("images", nargs="+", help="image files or folders of images")
    add_output(p, "output folder (one NAME.hvq per image; default compressed), or a .hvq file for one image",
               "compressed")
    add_recursive(p, "read every image below each folder (sub-folders too; hidden files and folders skipped), each "
                     "written to OUT/<its path below the folder>.hvq; two images to one file are refused, and so is "
                     "an output folder inside an input folder")
    add_priors(p)
    add_image_options(p)
    add_batch_size(p, 64, "images encoded and range-coded together")
    add_overwrite(p, "replace .hvq files that already exist")

    p = add_command(
        sub, "decompress", f"{RUN}:cmd_decompress", "decompress .hvq files to PNGs",
        "Decode .hvq files written by `hiervq compress` with the same model (its autoencoder and priors; "
        "another model's files are refused): one PNG per file, named after it, at the size its header records. "
        "The model may be left out: every file's header names the model that wrote it, and the shipped tokenizers "
        "and those in $HIERVQ_MODELS are searched for it (`hiervq decompress photo.hvq`); a run of your own, or "
        "--priors, must be named first. A folder stands for the .hvq files at its top level; with -r for every one "
        "below it, the output folder mirroring its tree (compressed/cats/a.hvq -> OUT/cats/a.png).",
    )
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="the run directory, saved model or tokenizer name that compressed the files (optional for a "
                        "shipped or $HIERVQ_MODELS tokenizer), then .hvq files or folders of them")
    p.usage = "%(prog)s [-h] [-o OUTPUT] [-r] [--priors DIR [DIR ...]] [options] [RUN] FILE [FILE ...]"
    p.set_defaults(intermixed="files")  # `decompress RUN -r DIR`: words after the options are files too
    add_output(p, "output folder (one NAME.png per file)", "decompressed")
    add_recursive(p, "read every .hvq file below each folder (sub-folders too; hidden ones skipped), each decoded to "
                     "OUT/<its path below the folder>.png; two files to one PNG are refused, and so is an output "
                     "folder inside an input folder")
    add_priors(p)
    add_batch_size(p, 64, "files decoded together")
    add_overwrite(p, "replace PNGs that already exist in the output folder")
