"""The code-count Bayes classifier on tiny synthetic code sets with known answers."""

import math

import pytest
import torch

from hiervq.classify.bayes import CodeCountBayes
from hiervq.experiments.pqvae import bayes_curves, earlier_matters_more


def test_independent_uses_the_informative_first_code():
    g = torch.Generator().manual_seed(0)
    n, length, k = 200, 5, 4
    labels = torch.arange(n) % 2
    codes = torch.randint(0, k, (n, length), generator=g)
    codes[:, 0] = labels * 2  # class 0 -> code 0, class 1 -> code 2 at position 1; the rest is noise
    clf = CodeCountBayes(k, 2).fit(codes, labels)
    test = torch.randint(0, k, (50, length), generator=g)
    test_labels = torch.arange(50) % 2
    test[:, 0] = test_labels * 2
    acc = clf.accuracy_by_prefix(test, test_labels, "independent")
    assert acc.shape == (length,)
    assert acc[0] == 1.0
    assert torch.equal(clf.predict(test, "independent", length=1), test_labels)


def test_conditional_sees_transitions_that_independent_cannot():
    # class 0 alternates (0101.. or 1010..), class 1 repeats (0000.. or 1111..): identical unigram statistics
    seqs = {0: [[0, 1, 0, 1], [1, 0, 1, 0]], 1: [[0, 0, 0, 0], [1, 1, 1, 1]]}
    codes = torch.tensor([s for c in (0, 1) for s in seqs[c]] * 10)
    labels = torch.tensor([c for c in (0, 1) for _ in seqs[c]] * 10)
    clf = CodeCountBayes(2, 2).fit(codes, labels)
    ind = clf.accuracy_by_prefix(codes, labels, "independent")
    cond = clf.accuracy_by_prefix(codes, labels, "conditional")
    assert ind.max() == 0.5  # every class gets the same likelihood: ties -> class 0
    assert cond[0] == 0.5 and (cond[1:] == 1.0).all()


def test_probabilities_against_hand_computation():
    codes = torch.tensor([[0, 1], [0, 1], [1, 1], [2, 0]])
    labels = torch.tensor([0, 0, 0, 1])
    k, alpha = 3, 1.0
    clf = CodeCountBayes(k, 2, alpha).fit(codes, labels)
    # prior: (3 + 1) / (4 + 2), (1 + 1) / 6
    torch.testing.assert_close(clf.log_prior(), torch.tensor([4 / 6, 2 / 6], dtype=torch.float64).log())
    terms_i = clf.log_likelihood_terms(torch.tensor([[0, 1]]), "independent")[0]
    # P(z_1 = 0 | c=0) = (2 + 1) / (3 + 3); P(z_2 = 1 | c=0) = (3 + 1) / (3 + 3); class 1: (0+1)/(1+3), (0+1)/(1+3)
    expected = torch.tensor([[3 / 6, 1 / 4], [4 / 6, 1 / 4]], dtype=torch.float64).log()
    torch.testing.assert_close(terms_i, expected)
    terms_c = clf.log_likelihood_terms(torch.tensor([[0, 1]]), "conditional")[0]
    # P(z_2 = 1 | z_1 = 0, c=0) = (2 + 1) / (2 + 3); class 1 never saw z_1 = 0: (0 + 1) / (0 + 3)
    torch.testing.assert_close(terms_c[1], torch.tensor([3 / 5, 1 / 3], dtype=torch.float64).log())
    torch.testing.assert_close(terms_c[0], expected[0])
    post = clf.log_posterior(torch.tensor([[0, 1]]), "conditional")[0, 1]
    assert post[0].item() == pytest.approx(math.log(4 / 6) + math.log(3 / 6) + math.log(3 / 5))


def test_bayes_curves_format_and_errors():
    codes = torch.randint(0, 8, (40, 6))
    labels = torch.arange(40) % 4
    result = bayes_curves(codes, labels, codes[:10], labels[:10], 8)
    assert result["prefix_lengths"] == [1, 2, 3, 4, 5, 6]
    assert len(result["independent"]) == 6 and len(result["conditional"]) == 6
    with pytest.raises(ValueError, match="codes must lie"):
        CodeCountBayes(4, 4).fit(codes, labels)
    with pytest.raises(ValueError, match="method"):
        CodeCountBayes(8, 4).fit(codes, labels).log_likelihood_terms(codes, "naive")


def test_earlier_matters_more_summary():
    s = earlier_matters_more([8.0, 6.0, 5.0, 1.0])
    assert s["first_quarter_mean"] == 8.0 and s["last_quarter_mean"] == 1.0
    assert s["spearman_vs_position"] == pytest.approx(-1.0)
