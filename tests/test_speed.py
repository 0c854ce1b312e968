"""Training speed work (issue 19): the reference widths, channels-last layout, sync-free statistics, evaluation
reuse, float32 quantization under bf16 autocast and the throughput benchmark. Every speed-up must leave the
results as they were (up to float rounding where the memory layout changes the order of sums)."""


import pytest

from hiervq.models import HierarchicalConfig, HierarchicalVQVAE


def test_vqvae2_widths_have_the_reference_parameter_count():
    """At the VQ-VAE-2 reference settings our default widths hold 340,096 more parameters (24 %): a full-width
    top encoder downsampling conv and 3x3 conv, and a conditioning decoder that outputs 128 channels instead of 64
    (and the wider bottom quantizer input that follows)."""
    def count(widths):
        return HierarchicalVQVAE(HierarchicalConfig(image_size=32, widths=widths)).num_parameters()

    assert count("vqvae2") == 1_388_867  # the reference implementation's count (benchmarks/train_throughput.py)
    assert count("hiervq") == 1_728_963
    model = HierarchicalVQVAE(HierarchicalConfig(image_size=32, widths="vqvae2"))
    assert model.encoders[1].net[0].out_channels == 64 and model.cond_decoders[0].net[-1].out_channels == 64
    assert model.pre_quant[0].in_channels == 128 + 64
    with pytest.raises(ValueError, match="widths"):
        HierarchicalConfig(widths="wide").validate()
