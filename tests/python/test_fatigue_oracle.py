"""`adstream fatigue fit` against statsmodels' Poisson GLM, the reference implementation of the same model.

The fatigue detector fits clicks ~ Poisson(impressions · exp(β0 + β1·exposure)) by Newton's method; statsmodels
fits the identical GLM (Poisson family, log link, offset ln(impressions)) by IRLS. On synthetic datasets (decaying,
rising, sparse with many zero-click points, large counts) both must give the same coefficients and standard errors
(inverse Fisher information) to 1e-6 relative. statsmodels runs with a tolerance of 1e-12 so that its own
stopping rule (deviance change below 1e-8 by default) is not what is being compared.

Binary: the ``adstream_bin`` fixture (``$ADSTREAM_BIN``, else ``$CARGO_TARGET_DIR/debug/adstream``).
"""

import json
import subprocess

import numpy as np
import pytest
import statsmodels.api as sm

RELATIVE = 1e-6


def dataset(seed, points, beta0, beta1, impressions_range, exposure_range):
    rng = np.random.default_rng(seed)
    exposure = np.sort(rng.uniform(*exposure_range, size=points))
    impressions = rng.integers(*impressions_range, size=points)
    clicks = rng.poisson(impressions * np.exp(beta0 + beta1 * exposure))
    return exposure, impressions, clicks


DATASETS = {
    # A fatiguing creative: 3 % CTR decaying with λ = 0.4 over exposures 1 to 6.
    "decaying": dataset(1, 60, -3.5, -0.4, (200, 5000), (1.0, 6.0)),
    # CTR rising slightly with exposure (λ < 0), few points.
    "rising": dataset(2, 8, -4.0, 0.1, (1000, 3000), (1.0, 3.0)),
    # Sparse: 1 % CTR on 20-150 impressions, so many points have no click at all.
    "sparse": dataset(3, 120, -4.6, -0.3, (20, 150), (1.0, 5.0)),
    # Large counts and a wide exposure range.
    "large": dataset(4, 168, -3.0, -0.25, (50_000, 200_000), (1.0, 12.0)),
}


def statsmodels_fit(exposure, impressions, clicks):
    model = sm.GLM(clicks, sm.add_constant(exposure), family=sm.families.Poisson(), offset=np.log(impressions))
    result = model.fit(method="IRLS", tol=1e-12, maxiter=200)
    return result.params, result.bse


def adstream_fit(adstream_bin, tmp_path, exposure, impressions, clicks):
    path = tmp_path / "points.csv"
    # repr keeps every digit of the exposure, so both sides fit the same numbers.
    rows = [f"{float(x)!r},{int(n)},{int(k)}" for x, n, k in zip(exposure, impressions, clicks)]
    path.write_text("exposure,impressions,clicks\n" + "\n".join(rows) + "\n")
    run = subprocess.run([adstream_bin, "fatigue", "fit", "--points", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_fit_matches_statsmodels(adstream_bin, tmp_path, name):
    exposure, impressions, clicks = DATASETS[name]
    (beta0, beta1), (se0, se1) = statsmodels_fit(exposure, impressions, clicks)
    fit = adstream_fit(adstream_bin, tmp_path, exposure, impressions, clicks)
    for key, expected in [("beta0", beta0), ("beta1", beta1), ("se_beta0", se0), ("se_beta1", se1)]:
        assert fit[key] == pytest.approx(expected, rel=RELATIVE), f"{name} {key}: {fit[key]} vs {expected}"


def test_sparse_dataset_really_has_zero_click_points():
    """The sparse case must exercise points without clicks, which least squares on log CTR could not fit."""
    _, _, clicks = DATASETS["sparse"]
    assert (clicks == 0).sum() >= 20


def test_fit_without_clicks_fails_with_a_clear_message(adstream_bin, tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("exposure,impressions,clicks\n1.0,100,0\n2.0,100,0\n")
    run = subprocess.run([adstream_bin, "fatigue", "fit", "--points", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode != 0
    assert "no clicks" in run.stderr
