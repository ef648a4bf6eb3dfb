"""Intervals, KID and paired comparisons (facesketch.report.stats, facesketch.metrics.kid)."""

import numpy as np
import pytest

from facesketch.metrics import kid
from facesketch.report import stats


def test_bootstrap_interval_covers_true_mean_about_95_percent():
    # per-image values from a skewed distribution with a known mean (gamma(2, 0.1): mean 0.2)
    rng = np.random.default_rng(1)
    hits, trials = 0, 400
    for _ in range(trials):
        values = rng.gamma(2.0, 0.1, size=60)
        lo, hi = stats.percentile_interval(stats.mean_replicates([values], n_boot=400, rng=rng))
        hits += lo <= 0.2 <= hi
    coverage = hits / trials
    # binomial sd at 95% and 400 trials is 1.1%; percentile intervals run slightly narrow at n=60
    assert 0.90 <= coverage <= 0.985, coverage


def test_hierarchical_interval_widens_with_seed_to_seed_spread():
    rng = np.random.default_rng(2)
    base = rng.normal(0.5, 0.05, 100)
    same = [base + rng.normal(0, 0.001, 100) for _ in range(3)]
    spread = [base + off for off in (-0.1, 0.0, 0.1)]
    w_same = np.diff(stats.percentile_interval(stats.mean_replicates(same, 1000)))[0]
    w_spread = np.diff(stats.percentile_interval(stats.mean_replicates(spread, 1000)))[0]
    assert w_spread > 3 * w_same


def _kid_loops(x, y):
    """Independent, slow U-statistic of MMD^2 with (x.y/d + 1)^3."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_the_u_statistic_by_loops():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.3, 1.0, size=(9, 5))
    assert kid.kid(x, y) == pytest.approx(_kid_loops(x, y), rel=1e-10)


def test_kid_near_zero_for_one_distribution_while_fid_is_not():
    from facesketch.metrics.fid import fid_from_features

    rng = np.random.default_rng(4)
    d = 64
    fids, kids = [], []
    for _ in range(20):
        a, b = rng.random((40, d)), rng.random((40, d))  # two samples of one distribution
        fids.append(fid_from_features(a, b))
        kids.append(kid.kid(a, b))
    # FID's small-sample bias: clearly positive although the distributions are equal
    assert np.mean(fids) > 0.5
    # KID is unbiased: its mean over repetitions is within sampling error of 0
    assert abs(np.mean(kids)) < 3 * np.std(kids) / np.sqrt(len(kids))
    # and a real shift is detected
    assert kid.kid(rng.random((40, d)), rng.random((40, d)) + 0.3) > 10 * np.std(kids)


def test_fast_frechet_matches_pytorch_fid():
    from facesketch.metrics.fid import fid_from_features

    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(50, 30)), rng.normal(0.2, 1.1, size=(20, 30))
    fr = kid.FrechetReplicates(real, fake)
    assert fr.fid() == pytest.approx(fid_from_features(real, fake), rel=1e-6)
    idx = rng.integers(0, 20, 20)
    assert fr.fid(idx) == pytest.approx(fid_from_features(real, fake[idx]), rel=1e-5)


def test_resampled_fid_is_recentred_on_the_estimate():
    """Repeated rows shrink the resampled set's spread, so raw FID replicates sit above the
    full-set FID; re-centred, the interval surrounds it with its width unchanged."""
    rng = np.random.default_rng(9)
    real, fake = rng.normal(size=(200, 16)), rng.normal(size=(25, 16))
    point = kid.FrechetReplicates(real, fake).fid()
    reps = kid.set_replicates(real, fake, 300)["FID"]
    lo, hi = stats.percentile_interval(reps)
    assert lo > point  # the raw percentile interval misses its own estimate
    rlo, rhi = stats.percentile_interval(stats.recentre(reps, point))
    assert rlo < point < rhi and (rhi - rlo) == pytest.approx(hi - lo)


def test_set_replicates_pair_by_index():
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(15, 8)), rng.normal(size=(15, 8))
    a = kid.set_replicates(real, fake, 5, seed=0)
    b = kid.set_replicates(real, fake, 5, seed=0)
    assert np.array_equal(a["FID"], b["FID"]) and np.array_equal(a["KID"], b["KID"])
    assert np.std(a["FID"]) > 0


def test_paired_test_finds_a_constructed_difference_and_not_a_null_one():
    rng = np.random.default_rng(7)
    n = 80
    difficulty = rng.normal(0.5, 0.2, n)  # per-image difficulty shared by both methods
    b = [difficulty + rng.normal(0, 0.02, n)]
    a_better = [difficulty + 0.02 + rng.normal(0, 0.02, n)]
    res = stats.paired_image_diff(a_better, b)
    assert res["lo"] > 0 and res["p"] < 0.01
    assert res["lo"] < 0.02 < res["hi"]
    # the per-image spread (0.2) would hide 0.02 in an unpaired comparison: the pairing is what finds it
    wa = stats.percentile_interval(stats.mean_replicates(a_better, 2000))
    wb = stats.percentile_interval(stats.mean_replicates(b, 2000))
    assert wa[0] < wb[1]
    null = stats.paired_image_diff([difficulty + rng.normal(0, 0.02, n)], b)
    assert null["p"] > 0.05 and null["lo"] < 0 < null["hi"]


def test_paired_null_p_values_are_roughly_uniform():
    rng = np.random.default_rng(8)
    ps = []
    for _ in range(200):
        d = rng.normal(0, 1, 40)
        ps.append(stats.paired_image_diff([d + rng.normal(0, 1, 40)], [d + rng.normal(0, 1, 40)], n_boot=300)["p"])
    rejected = np.mean(np.array(ps) < 0.05)
    assert 0.01 <= rejected <= 0.10, rejected


def test_holm_by_hand():
    # sorted p: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06 by monotonicity), 0.5 (x1)
    assert stats.holm([0.03, 0.01, 0.5, 0.02, float("nan")])[:4] == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert np.isnan(stats.holm([0.03, float("nan")])[1])


# --- the smallest sets, resampled sets and float32 features ----------------------------------------


@pytest.mark.parametrize("m,n", [(2, 2), (2, 3), (3, 2)])
def test_kid_of_the_smallest_sets_is_the_u_statistic(m, n):
    rng = np.random.default_rng(m * 10 + n)
    x, y = rng.normal(size=(m, 4)), rng.normal(0.5, 1.0, size=(n, 4))
    assert kid.kid(x, y) == pytest.approx(_kid_loops(x, y), rel=1e-10)
    assert kid.KernelSums(x, y).kid() == pytest.approx(_kid_loops(x, y), rel=1e-10)


@pytest.mark.parametrize("m,n", [(1, 5), (5, 1), (1, 1)])
def test_kid_of_a_single_image_is_nan(m, n):
    rng = np.random.default_rng(0)
    assert np.isnan(kid.kid(rng.normal(size=(m, 4)), rng.normal(size=(n, 4))))
    assert np.isnan(kid.set_replicates(rng.normal(size=(m, 4)), rng.normal(size=(n, 4)), 3)["KID"]).all()


def test_resampled_kid_and_fid_are_those_of_the_resampled_set():
    """A replicate with indices idx scores fake[idx] (repeated rows included) exactly as a set."""
    from facesketch.metrics.fid import fid_from_features

    rng = np.random.default_rng(8)
    real, fake = rng.normal(size=(9, 4)), rng.normal(0.3, 1.2, size=(7, 4))
    ks, fr = kid.KernelSums(real, fake), kid.FrechetReplicates(real, fake)
    for idx in (np.array([3, 3, 0, 6, 1, 1, 2]), np.array([4, 2]), np.array([5, 5, 5, 1])):
        assert ks.kid(idx) == pytest.approx(_kid_loops(real, fake[idx]), rel=1e-10)
        assert fr.fid(idx) == pytest.approx(fid_from_features(real, fake[idx]), rel=1e-5, abs=1e-6)
    assert np.isnan(ks.kid(np.array([2]))) and np.isnan(fr.fid(np.array([2])))


def test_features_are_taken_in_float64_whatever_their_dtype():
    rng = np.random.default_rng(11)
    real, fake = rng.normal(size=(30, 64)), rng.normal(0.1, 1.0, size=(20, 64))
    r32, f32 = real.astype(np.float32), fake.astype(np.float32)
    r64, f64 = r32.astype(np.float64), f32.astype(np.float64)
    assert kid.kid(r32, f32) == kid.kid(r64, f64)
    assert kid.FrechetReplicates(r32, f32).fid() == kid.FrechetReplicates(r64, f64).fid()
    a, b = kid.set_replicates(r32, f32, 4), kid.set_replicates(r64, f64, 4)
    assert np.array_equal(a["FID"], b["FID"]) and np.array_equal(a["KID"], b["KID"])


def test_replicates_default_to_seed_0_and_small_sets_give_nan_of_the_asked_length():
    rng = np.random.default_rng(12)
    real, fake = rng.normal(size=(10, 6)), rng.normal(size=(8, 6))
    a, b = kid.set_replicates(real, fake, 4), kid.set_replicates(real, fake, 4, seed=0)
    assert np.array_equal(a["FID"], b["FID"]) and np.array_equal(a["KID"], b["KID"])
    two = kid.set_replicates(real[:2], fake[:2], 3)
    assert np.isfinite(two["KID"]).all() and np.isfinite(two["FID"]).all()  # two images are enough
    for r, f in ((real[:1], fake), (real, fake[:1])):
        out = kid.set_replicates(r, f, 5)
        assert set(out) == {"FID", "KID"} and all(v.shape == (5,) and np.isnan(v).all() for v in out.values())


def test_replicates_resample_every_row_uniformly_with_replacement_from_the_seed():
    """The bootstrap's definition: replicate b scores fake[idx_b], idx_b the b-th draw of n row
    indices from 0..n-1 (numpy's default_rng(seed).integers), the same draws for FID and KID."""
    from facesketch.metrics.fid import fid_from_features

    rng = np.random.default_rng(13)
    real, fake = rng.normal(size=(12, 4)), rng.normal(0.4, 1.0, size=(6, 4))
    out = kid.set_replicates(real, fake, 5, seed=7)
    draws = np.random.default_rng(7)
    for b in range(5):
        idx = draws.integers(0, 6, 6)
        assert out["KID"][b] == pytest.approx(_kid_loops(real, fake[idx]), rel=1e-10)
        assert out["FID"][b] == pytest.approx(fid_from_features(real, fake[idx]), rel=1e-5, abs=1e-6)
