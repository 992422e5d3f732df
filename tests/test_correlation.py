"""ca_core.metrics.correlation: per-row Pearson and Spearman against SciPy, and the constant-row convention."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr

from ca_core.metrics import pearson, spearman


def rows(seed: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g)
    return a, a + torch.rand(shape, generator=g)  # correlated, not identical


@pytest.mark.parametrize("shape", [(4, 2), (3, 17), (2, 7, 7), (2, 3, 5, 5)])
def test_pearson_and_spearman_match_scipy_per_row(shape):
    a, b = rows(0, shape)
    a[0] = (a[0] * 3).round()  # ties
    flat_a, flat_b = a.flatten(1).double().numpy(), b.flatten(1).double().numpy()
    np.testing.assert_allclose(pearson(a, b), [pearsonr(x, y).statistic for x, y in zip(flat_a, flat_b)], atol=1e-12)
    np.testing.assert_allclose(spearman(a, b), [spearmanr(x, y).statistic for x, y in zip(flat_a, flat_b)], atol=1e-12)


def test_any_dtype_or_array_gives_the_same_float64_values():
    a, b = rows(1, (3, 20))
    expected = pearson(a.double(), b.double())
    assert expected.dtype == np.float64 and expected.shape == (3,)
    np.testing.assert_array_equal(pearson(a.double().numpy(), b.double().numpy()), expected)
    np.testing.assert_array_equal(pearson(a.requires_grad_(), b), pearson(a.detach(), b))  # float32 is exact in float64
    np.testing.assert_array_equal(spearman(a.half(), b.half()), spearman(a.half().double(), b.half().double()))


def test_constant_rows_give_one_when_both_are_constant_and_zero_against_a_varying_row():
    varying = torch.arange(6.0).reshape(1, 6)
    const, other_const = torch.full((1, 6), 0.3), torch.zeros(1, 6)
    for correlation in (pearson, spearman):
        assert correlation(const, other_const).tolist() == [1.0]
        assert correlation(const, varying).tolist() == correlation(varying, const).tolist() == [0.0]
        assert correlation(varying, 2 * varying + 1).tolist() == pytest.approx([1.0])
        assert correlation(varying, -varying).tolist() == pytest.approx([-1.0])


def test_spearman_is_pearson_of_average_ranks():
    a = torch.tensor([[3.0, 1.0, 1.0, 2.0]])  # ranks 4, 1.5, 1.5, 3
    b = torch.tensor([[1.0, 2.0, 3.0, 100.0]])  # ranks 1, 2, 3, 4
    ranks_a, ranks_b = torch.tensor([[4.0, 1.5, 1.5, 3.0]]), torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_array_equal(spearman(a, b), pearson(ranks_a, ranks_b))


def test_rows_of_another_shape_are_an_error():
    with pytest.raises(ValueError, match=r"one shape, got \(2, 4\) and \(2, 5\)"):
        pearson(torch.zeros(2, 4), torch.zeros(2, 5))
