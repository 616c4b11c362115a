"""The statistical tests of the drift check: two-sample Kolmogorov-Smirnov and a two-sample chi-square on label counts
(scipy's), a kernel MMD with a permutation null, and Holm's correction across them (scipy has neither: its multiple
testing is Benjamini-Hochberg only)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic D and its p-value (scipy: exact for small samples, asymptotic for large)."""
    if len(a) == 0 or len(b) == 0:
        return 0.0, 1.0
    result = stats.ks_2samp(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return float(result.statistic), float(result.pvalue)


def chi2_counts(reference: np.ndarray, window: np.ndarray) -> tuple[float, float, int]:
    """Chi-square test that two count vectors come from one distribution (a 2 x K contingency table; classes seen in
    neither are dropped). Returns (statistic, p-value, degrees of freedom)."""
    table = np.vstack([reference, window]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or table[1].sum() == 0 or table[0].sum() == 0:
        return 0.0, 1.0, 0
    result = stats.chi2_contingency(table, correction=False)  # no Yates: the same test for every K
    return float(result.statistic), float(result.pvalue), int(result.dof)


def median_bandwidth(sample: np.ndarray) -> float:
    """The median pairwise distance within a sample: the usual scale for a Gaussian kernel."""
    squared = _squared_distances(sample, sample)
    upper = squared[np.triu_indices(len(sample), k=1)]
    return float(math.sqrt(max(np.median(upper), 1e-12)))


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return np.maximum((x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T, 0.0)


def gaussian_kernel(x: np.ndarray, y: np.ndarray, bandwidth: float) -> np.ndarray:
    return np.exp(-_squared_distances(x, y) / (2.0 * bandwidth * bandwidth))


def mmd_test(
    reference: np.ndarray,
    window: np.ndarray,
    bandwidth: float,
    *,
    permutations: int = 100,
    seed: int = 0,
    reference_kernel: np.ndarray | None = None,
) -> dict[str, float]:
    """Squared MMD (biased estimate, Gaussian kernel) between two samples, and its p-value under the permutation
    null. The p-value comes from a gamma distribution fitted to the permuted statistics' mean and variance (Gretton
    et al. 2009): a raw permutation count could not go below 1/(permutations + 1), above what a corrected test at
    alpha = 0.01 needs; the raw count is reported too. `reference_kernel` (the reference's own block, the same for
    every window) saves recomputing it."""
    m, n = len(reference), len(window)
    kernel = np.empty((m + n, m + n))
    kernel[:m, :m] = gaussian_kernel(reference, reference, bandwidth) if reference_kernel is None else reference_kernel
    kernel[:m, m:] = gaussian_kernel(reference, window, bandwidth)
    kernel[m:, :m] = kernel[:m, m:].T
    kernel[m:, m:] = gaussian_kernel(window, window, bandwidth)
    weights = np.concatenate([np.full(m, 1.0 / m), np.full(n, -1.0 / n)])
    observed = float(weights @ kernel @ weights)
    rng = np.random.default_rng(seed)
    shuffled = np.stack([weights[rng.permutation(m + n)] for _ in range(permutations)])
    null = np.einsum("pi,pi->p", shuffled @ kernel, shuffled)
    mean, var = float(null.mean()), float(null.var(ddof=1))
    if var <= 0 or mean <= 0:
        p_value = 1.0 if observed <= mean else 0.0
    else:
        # The null as a gamma distribution with its mean and variance (Gretton et al.'s approximation).
        p_value = float(stats.gamma.sf(observed, mean * mean / var, scale=var / mean))
    return {
        "statistic": observed,
        "p_value": p_value,
        "permutation_p": float((1 + np.sum(null >= observed)) / (1 + permutations)),
        "null_mean": mean,
        "null_std": math.sqrt(var),
        "null": null,
    }


def holm(p_values: list[float], alpha: float) -> tuple[list[bool], list[float]]:
    """Holm-Bonferroni: which hypotheses are rejected at family-wise error alpha, and the adjusted p-values."""
    count = len(p_values)
    order = sorted(range(count), key=lambda i: p_values[i])
    rejected, adjusted = [False] * count, [1.0] * count
    running, stopped = 0.0, False
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (count - rank) * p_values[i]))
        adjusted[i] = running
        if not stopped and p_values[i] <= alpha / (count - rank):
            rejected[i] = True
        else:
            stopped = True
    return rejected, adjusted
