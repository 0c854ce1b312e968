"""The next-scale prior on MNIST: test bits per image against the uniform bound, and sampling time per image with
one forward per scale (S) against a token-by-token transformer of the same size (T forwards).

    hiervq train configs/nextscale-mnist.yaml --out runs/ms-mnist
    hiervq prior runs/ms-mnist
    python benchmarks/nextscale_prior.py runs/ms-mnist        # -> benchmarks/results/nextscale_prior_mnist.json

Reads the prior run's summary (``RUN/priors/level0``) for the test bits. The timing samples ``--n`` images with
the trained :class:`~hiervq.priors.NextScalePrior` (S forwards, counted) against two token-by-token walks, both
cache-free like the next-scale prior's: the same network run T times over growing prefixes with a causal mask
(what token-by-token sampling of this prior's architecture costs; its inputs are built once and not counted),
and an untrained :class:`~hiervq.priors.TransformerPrior` of the same width, depth, heads, K and length T (the
repository's token-by-token prior, whose position-specific output layer makes each forward dearer); sampling
cost does not depend on the weights. All run in eval mode on one thread; the best of ``--repeats`` runs counts.

Also written, so that the docs quote no number the JSON does not hold: the autoencoder run's test PSNR, epochs and
training seconds (``autoencoder_*``, from its summary); the prior's bits per image after each epoch
(``prior_bits_per_image_per_epoch``, from its metrics.jsonl, on the split named by ``prior_epoch_split``: the
validation split when the run has one, else the test split); ``samples_per_s`` of
:func:`hiervq.priors.sampling.sample_run` (what ``hiervq sample RUN -n N`` runs: the prior and the decoder) for
``--n`` images; and the codec on the first ``--codec-images`` images of the run's test split
(:meth:`hiervq.codec.Codec.from_run`): ``codec_bytes_per_image`` (mean file size), ``codec_header_bytes``,
``codec_estimate_bits_per_image`` (the priors' estimate of the payload) and ``codec_exact`` (the decompressed codes
are the model's own).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "nextscale_prior_mnist.json"


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="autoencoder run with a multi-scale level 0 and its prior (hiervq prior RUN)")
    ap.add_argument("--n", type=int, default=16, help="images per sampling batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--codec-images", type=int, default=32, help="test images compressed for the codec keys")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import hiervq
    from hiervq.codec import Codec, header_bytes
    from hiervq.data import load_data
    from hiervq.layout import RunDir
    from hiervq.priors import TransformerPrior, TransformerPriorConfig
    from hiervq.priors.sampling import sample_run
    from hiervq.train import read_run_config

    model = hiervq.load(args.run).eval()
    prior_dir = RunDir(args.run).prior(0)
    prior = hiervq.load(prior_dir.model).eval()
    summary = prior_dir.read_summary()
    c = prior.config
    tokens = prior.num_tokens

    forwards = []
    inner = prior._logits
    prior._logits = lambda *a: forwards.append(1) or inner(*a)
    gen = torch.Generator().manual_seed(0)
    nextscale_s = best_time(lambda: prior.sample(args.n, generator=gen), args.repeats)
    prior._logits = inner
    per_call = len(forwards) // args.repeats
    with torch.no_grad():
        codes = prior.sample(args.n, generator=gen)
        images = model.decode(model.codes_from_list([codes]))
    assert images.shape[0] == args.n

    @torch.no_grad()
    def same_network_token_by_token():
        x = prior._inputs(codes, len(prior.scales), None, None)
        causal = torch.ones(tokens, tokens, dtype=torch.bool).tril()
        for t in range(tokens):
            h = x[:, : t + 1]
            for block in prior.blocks:
                h = block(h, causal[: t + 1, : t + 1])
            torch.multinomial(torch.softmax(prior.head(prior.norm(h[:, -1])), -1), 1, generator=gen)

    same_s = best_time(same_network_token_by_token, args.repeats)
    baseline = TransformerPrior(TransformerPriorConfig(codebook_size=c.codebook_size, length=tokens, dim=c.channels,
                                                       layers=c.layers, heads=c.heads, ff_mult=c.ff_mult,
                                                       dropout=c.dropout)).eval()
    token_s = best_time(lambda: baseline.sample(args.n, generator=gen), 1)

    autoencoder = RunDir(args.run).read_summary()
    history = prior_dir.read_metrics()
    split = "val" if any("val" in record for record in history) else "test"  # what each epoch was evaluated on
    per_epoch = [record[split]["bits_per_image"] for record in history if split in record]
    samples = sample_run(args.run, n=args.n, seed=0)
    codec = Codec.from_run(args.run)
    x = load_data(read_run_config(args.run).data).test.batch(slice(0, args.codec_images))[0]
    compressed = codec.compress_batch(x)
    back, _ = codec.decompress_codes(compressed.files)
    exact = all(torch.equal(a, b) for a, b in zip(back, compressed.codes))
    row = {
        "script": "benchmarks/nextscale_prior.py",
        "run": str(args.run),
        "scales": [h for h, _ in prior.scales] if all(h == w for h, w in prior.scales) else prior.scales,
        "tokens_per_image": tokens,
        "codebook_size": c.codebook_size,
        "prior_params": prior.num_parameters(),
        "prior_epochs": summary["epochs"],
        "prior_train_s": summary["train_s"],
        "test_images": summary["test_images"],
        "test_bits_per_image": round(summary["bits_per_image"], 1),
        "uniform_bits_per_image": round(summary["uniform_bits_per_image"], 1),
        "saved_fraction": round(summary["saved_fraction"], 4),
        "nextscale_forwards_per_sample": per_call,
        "nextscale_ms_per_image": round(1000 * nextscale_s / args.n, 2),
        "token_by_token_forwards_per_sample": tokens,
        "same_network_token_by_token_ms_per_image": round(1000 * same_s / args.n, 2),
        "speedup_vs_same_network": round(same_s / nextscale_s, 1),
        "transformer_prior_ms_per_image": round(1000 * token_s / args.n, 2),
        "speedup_vs_transformer_prior": round(token_s / nextscale_s, 1),
        "batch": args.n,
        "threads": 1,
        "autoencoder_psnr": autoencoder["psnr"],
        "autoencoder_epochs": autoencoder["epochs"],
        "autoencoder_train_s": autoencoder["train_s"],
        "prior_epoch_split": split,
        "prior_bits_per_image_per_epoch": [round(b, 1) for b in per_epoch],
        "samples_per_s": round(samples.samples_per_s, 1),
        "codec_images": len(compressed.files),
        "codec_bytes_per_image": round(sum(len(f) for f in compressed.files) / len(compressed.files), 1),
        "codec_header_bytes": header_bytes(compressed.files[0]),
        "codec_estimate_bits_per_image": round(float(compressed.bits.mean()), 1),
        "codec_exact": exact,
    }
    print(json.dumps(row, indent=2))
    Path(args.out).write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
