"""training/btyd.py against the published CDNOW example and against brute-force integration.

The closed forms (likelihood, P(alive), conditional expectation, P(no purchase)) are checked
against a direct numerical integration of the BG/NBD story over the rate lambda ~ Gamma(r,
alpha) and the dropout probability p ~ Beta(a, b); the expectation also against the worked
example of Fader, Hardie & Lee (2005) for CDNOW (r=0.243, alpha=4.414, a=0.793, b=2.426; x=2,
t_x=30.43, T=38.86: 1.226 purchases in the next 39 weeks, the figure of Hardie's spreadsheet
that `lifetimes` tests against too). The fit recovers known parameters from simulated customers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.special import gammaln

from training import btyd

CDNOW = btyd.Params(r=0.243, alpha=4.414, a=0.793, b=2.426)


def _integrate(p: btyd.Params, x: int, t_x: float, T: float, t: float = 0.0):
    """(likelihood, P(alive), E[purchases in (T, T+t]]) by integrating over (lambda, p).

    Substituting u = lambda^r and v = p^a removes the priors' singularities at zero:
    Gamma(r, alpha) and Beta(a, b) densities times dlambda dp become constants times du dv."""
    norm_l = np.exp(p.r * np.log(p.alpha) - gammaln(p.r)) / p.r
    norm_p = np.exp(gammaln(p.a + p.b) - gammaln(p.a) - gammaln(p.b)) / p.a

    def point(v, u, what):
        lam, q = u ** (1 / p.r), v ** (1 / p.a)
        prior = norm_l * np.exp(-p.alpha * lam) * norm_p * (1 - q) ** (p.b - 1)
        alive = (1 - q) ** x * lam**x * np.exp(-lam * T)
        dead = q * (1 - q) ** (x - 1) * lam**x * np.exp(-lam * t_x) if x > 0 else 0.0
        if what == "likelihood":
            return prior * (alive + dead)
        if what == "alive":
            return prior * alive
        if what == "none":  # dead, or alive and silent for t
            return prior * (alive * np.exp(-lam * t) + dead)
        return prior * alive * (-np.expm1(-lam * q * t)) / q if q > 0 else prior * alive * lam * t

    u_max = 6.0**p.r  # lambda up to 6 a week: exp(-6 T) is nothing next to the mass below
    opts = {"epsabs": 1e-13, "epsrel": 1e-9}
    values = [
        integrate.dblquad(point, 0, u_max, 0, 1, args=(what,), **opts)[0]
        for what in ("likelihood", "alive", "future", "none")
    ]
    like, alive, future, none = values
    return like, alive / like, future / like, none / like


@pytest.mark.parametrize(
    ("x", "t_x", "T"), [(0, 0.0, 30.0), (1, 5.0, 38.0), (2, 30.43, 38.86), (6, 12.0, 50.0)]
)
def test_closed_forms_equal_a_brute_force_integration(x, t_x, T):
    like, alive, future, none = _integrate(CDNOW, x, t_x, T, t=39.0)
    args = (np.array([float(x)]), np.array([t_x]), np.array([T]))
    assert btyd.log_likelihood(CDNOW, *args)[0] == pytest.approx(np.log(like), abs=1e-6)
    assert btyd.p_alive(CDNOW, *args)[0] == pytest.approx(alive, abs=1e-6)
    assert btyd.expected_purchases(CDNOW, 39.0, *args)[0] == pytest.approx(future, rel=1e-5)
    assert btyd.p_no_purchase(CDNOW, 39.0, *args)[0] == pytest.approx(none, abs=1e-6)


def test_the_published_cdnow_example():
    args = (np.array([2.0]), np.array([30.43]), np.array([38.86]))
    assert btyd.expected_purchases(CDNOW, 39.0, *args)[0] == pytest.approx(1.226, abs=1e-3)
    # without a repeat order nobody has died yet (the model lets customers drop after a repeat)
    assert btyd.p_alive(CDNOW, np.array([0.0]), np.array([0.0]), np.array([30.0]))[0] == 1.0


def _simulate(p: btyd.Params, n: int, seed: int):
    rng = np.random.default_rng(seed)
    lam = rng.gamma(p.r, 1 / p.alpha, n)
    drop = rng.beta(p.a, p.b, n)
    T = rng.uniform(20, 60, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        now = 0.0
        while True:
            now += rng.exponential(1 / lam[i])
            if now > T[i]:
                break
            x[i] += 1
            t_x[i] = now
            if rng.random() < drop[i]:
                break
    return x, t_x, T


def test_the_fit_recovers_known_parameters():
    truth = btyd.Params(r=0.8, alpha=6.0, a=0.6, b=2.5)
    x, t_x, T = _simulate(truth, 6000, seed=3)
    fitted, mean_ll = btyd.fit(x, t_x, T)
    assert mean_ll >= float(np.mean(btyd.log_likelihood(truth, x, t_x, T)))  # it is the maximum
    for name, value in truth.as_dict().items():
        assert fitted.as_dict()[name] == pytest.approx(value, rel=0.25), name


def test_the_transformer_reads_frames_by_name_and_matrices_by_position():
    x, t_x, T = _simulate(btyd.Params(r=0.8, alpha=6.0, a=0.6, b=2.5), 800, seed=5)
    frame = pd.DataFrame(
        {
            "other": np.arange(len(x), dtype=float),
            "days_since_last_order": (T - t_x) * 7,
            "repeat_orders": x,
            "days_since_first_order": T * 7,
        }
    )
    frame.loc[3, "days_since_first_order"] = np.nan  # a row without inputs scores NaN
    step = btyd.BGNBDFeatures(horizon_days=90).fit(frame)
    out = step.transform(frame)
    names = step.output_names(list(frame.columns))
    outputs = ["btyd_p_alive", "btyd_expected_orders_90d", "btyd_p_no_order_90d"]
    assert names == [*frame.columns, *outputs]
    np.testing.assert_array_equal(out[:, :4], frame.to_numpy())
    assert np.isnan(out[3, 4:]).all()
    params = step.params_
    i = 7
    args = (np.array([x[i]]), np.array([t_x[i]]), np.array([T[i]]))
    assert out[i, 4] == pytest.approx(btyd.p_alive(params, *args)[0])
    assert out[i, 5] == pytest.approx(btyd.expected_purchases(params, 90 / 7, *args)[0])
    assert out[i, 6] == pytest.approx(btyd.p_no_purchase(params, 90 / 7, *args)[0])
    # serving: plain floats in the same order give the same numbers
    np.testing.assert_array_equal(step.transform(frame.to_numpy()), out)
