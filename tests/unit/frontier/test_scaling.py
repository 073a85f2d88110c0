"""The power-law fit recovers known parameters and inverts correctly; unusable data is refused."""

from __future__ import annotations

import numpy as np
import pytest

from transferlm.frontier.scaling import compute_to_reach, fit_power_law

COMPUTE = np.geomspace(1e12, 1e15, 8)


def test_recovers_pure_power_law_and_its_inverse():
    a, b = 60.0, 0.08
    fit = fit_power_law(COMPUTE, a * COMPUTE**-b)
    assert fit.a == pytest.approx(a, rel=1e-6)
    assert fit.b == pytest.approx(b, rel=1e-6)
    assert fit.irreducible == 0.0
    assert fit.r2 == pytest.approx(1.0)
    target = a * 1e17**-b  # 100x beyond the last point
    assert compute_to_reach(fit, target) == pytest.approx(1e17, rel=1e-4)


def test_recovers_irreducible_term_when_curvature_is_real():
    a, b, e = 400.0, 0.2, 1.5
    fit = fit_power_law(COMPUTE, a * COMPUTE**-b + e)
    assert fit.irreducible == pytest.approx(e, rel=1e-2)
    assert fit.b == pytest.approx(b, rel=5e-2)
    assert compute_to_reach(fit, float(a * 3e15**-b + e)) == pytest.approx(3e15, rel=5e-2)
    assert compute_to_reach(fit, e * 0.9) is None  # below the floor: never reached


def test_noisy_pure_power_law_stays_close_and_pure():
    rng = np.random.default_rng(0)
    a, b = 60.0, 0.08
    loss = a * COMPUTE**-b * np.exp(rng.normal(0, 0.005, COMPUTE.size))
    fit = fit_power_law(COMPUTE, loss)
    assert fit.b == pytest.approx(b, rel=0.15)
    assert fit.irreducible == 0.0


def test_rising_loss_gives_no_compute_estimate():
    fit = fit_power_law(COMPUTE, 2.0 * COMPUTE**0.05)
    assert not fit.decreasing
    assert compute_to_reach(fit, 1.0) is None


def test_too_few_usable_points_is_refused():
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_power_law([1e12, 2e12, float("nan")], [5.0, 4.0, 3.0])
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_power_law([1e12, 1e12, 1e12], [5.0, 4.0, 3.0])
