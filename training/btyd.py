"""BG/NBD ("Buy 'Til You Die"): probability alive and expected purchases, fitted on training rows.

Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way", Marketing Science 24(2). A
customer buys at Poisson rate lambda ~ Gamma(r, alpha) while alive and, after each purchase, dies
with probability p ~ Beta(a, b). From a customer's history at T (x repeat orders, t_x = time from
the first order to the last, T = time from the first order to T, in weeks) the model gives in
closed form the likelihood (eq. 6), P(alive at T) (Fader, Hardie & Lee 2008 note), the expected
number of purchases in the next t weeks (eq. 10) and the probability of none in them.

Why our own ~60 lines on scipy rather than a library: `lifetimes` is archived and `btyd`, its
fork, was archived in 2024; `pymc-marketing` brings PyMC and PyTensor (hundreds of MB) for a
four-parameter maximum likelihood. Everything here is `scipy.special` (gammaln, betaln, hyp2f1)
and one `scipy.optimize.minimize`; scipy is already pinned (sklearn needs it).

The inputs x, t_x and T are point-in-time features of the churn service (`repeat_orders` of
customer_rhythm, `days_since_first_order` and `days_since_last_order` on demand). The four
parameters are a model artifact: `BGNBDFeatures` learns them on the training rows only (like a
scaler) and, inside the saved sklearn Pipeline, adds `btyd_p_alive`,
`btyd_expected_orders_<horizon>d` and `btyd_p_no_order_<horizon>d` to every row it scores, in
training and in serving alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, expit, gammaln, hyp2f1
from sklearn.base import BaseEstimator, TransformerMixin

DAYS_PER_WEEK = 7.0
# The churn service's columns BGNBDFeatures reads: repeat orders, first-order age, recency (days).
INPUTS = ("repeat_orders", "days_since_first_order", "days_since_last_order")


@dataclass(frozen=True)
class Params:
    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


def log_likelihood(p: Params, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Each customer's log-likelihood (FHL 2005 eq. 6), in log space (no overflow for big x)."""
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
    alive = betaln(a, b + x) - (r + x) * np.log(alpha + T)
    repeat = x > 0
    xd = np.where(repeat, x, 1.0)  # the dead term exists for x > 0 only
    dead = betaln(a + 1, b + xd - 1) - (r + xd) * np.log(alpha + t_x)
    return common + np.where(repeat, np.logaddexp(alive, dead), alive)


def fit(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> tuple[Params, float]:
    """Maximum likelihood (L-BFGS-B on the parameters' logs, from all ones); returns the
    parameters and the mean log-likelihood per customer."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))

    def loss(theta: np.ndarray) -> float:
        return -float(np.mean(log_likelihood(Params(*np.exp(theta)), x, t_x, T)))

    best = minimize(loss, np.zeros(4), method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 4)
    return Params(*(float(v) for v in np.exp(best.x))), -float(best.fun)


_FITS: dict[bytes, tuple[Params, float]] = {}  # by the inputs' bytes: training refits on the
# same fold rows once per learner and setting (about 20 times); the answer is the same each time


def fit_once(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> tuple[Params, float]:
    """`fit`, remembered for the last few distinct inputs of this process."""
    arrays = [np.ascontiguousarray(v, dtype=float) for v in (x, t_x, T)]
    key = hashlib.blake2b(b"".join(a.tobytes() for a in arrays), digest_size=16).digest()
    if key not in _FITS:
        if len(_FITS) >= 16:
            _FITS.pop(next(iter(_FITS)))
        _FITS[key] = fit(*arrays)
    return _FITS[key]


def _log_death_odds(p: Params, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """log of a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x): the odds 'died at t_x' to 'alive at T'
    (minus infinity without a repeat order: nobody dies before their first repeat purchase)."""
    xd = np.where(x > 0, x, 1.0)
    odds = (
        np.log(p.a)
        - np.log(p.b + xd - 1)
        + (p.r + xd) * (np.log(p.alpha + T) - np.log(p.alpha + t_x))
    )
    return np.where(x > 0, odds, -np.inf)


def p_alive(p: Params, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive at T | x, t_x, T) (Fader, Hardie & Lee 2008, 'Computing P(alive) using the BG/NBD
    model')."""
    return expit(-_log_death_odds(p, x, t_x, T))


def expected_purchases(
    p: Params, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """E[purchases in (T, T + t] | x, t_x, T] (FHL 2005 eq. 10)."""
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    z = t / (alpha + T + t)
    shrink = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
    alive_part = (a + b + x - 1) / (a - 1) * (1 - shrink * hyp2f1(r + x, b + x, a + b + x - 1, z))
    return alive_part * p_alive(p, x, t_x, T)


def p_no_purchase(p: Params, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(no purchase in (T, T + t] | x, t_x, T): dead, or alive and silent. Alive, the rate's
    posterior is Gamma(r + x, alpha + T), so silence for t has probability
    ((alpha + T) / (alpha + T + t))^(r + x). The churn label's question, in the model's terms."""
    alive = p_alive(p, x, t_x, T)
    silent = np.exp((p.r + x) * (np.log(p.alpha + T) - np.log(p.alpha + T + t)))
    return 1.0 - alive + alive * silent


def inputs_in_weeks(
    repeat: np.ndarray, first_age_days: np.ndarray, recency_days: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) from the service's columns: t_x = first-order age minus recency, in weeks."""
    x = np.asarray(repeat, dtype=float)
    T = np.asarray(first_age_days, dtype=float) / DAYS_PER_WEEK
    t_x = np.clip(T - np.asarray(recency_days, dtype=float) / DAYS_PER_WEEK, 0.0, T)
    return x, t_x, T


class BGNBDFeatures(TransformerMixin, BaseEstimator):
    """Appends `btyd_p_alive`, `btyd_expected_orders_<horizon>d` and `btyd_p_no_order_<horizon>d`
    (the label's question: no order in the horizon) to a model matrix.

    `fit` learns the four BG/NBD parameters from the rows it is given (the training rows: each
    (customer, cutoff) row is one customer history, a composite likelihood over the panel) and
    remembers where its three input columns sit (`feature_names_in_`, which the artifact loader
    checks against the card), so `transform` reads serving's plain float matrix by position.
    It returns a plain float array (the inputs, then the two outputs): the model after it never
    sees names, and `output_names` says what the columns are. Rows with an input missing get NaN,
    which the learners handle as every other missing value.
    """

    def __init__(self, horizon_days: int = 90, inputs: tuple[str, str, str] = INPUTS) -> None:
        self.horizon_days = horizon_days
        self.inputs = inputs

    @property
    def outputs(self) -> tuple[str, str, str]:
        h = self.horizon_days
        return ("btyd_p_alive", f"btyd_expected_orders_{h}d", f"btyd_p_no_order_{h}d")

    def fit(self, X: pd.DataFrame, y=None) -> BGNBDFeatures:
        columns = [str(c) for c in X.columns]
        self.feature_names_in_ = np.asarray(columns, dtype=object)
        self.positions_ = [columns.index(name) for name in self.inputs]
        self.n_features_in_ = len(columns)
        x, t_x, T = self._inputs(np.asarray(X, dtype=float))
        ok = np.isfinite(x) & np.isfinite(T) & (T > 0) & (x >= 0)
        if not ok.any():
            raise ValueError(f"no row with usable BG/NBD inputs {self.inputs}")
        self.params_, self.mean_log_likelihood_ = fit_once(x[ok], t_x[ok], T[ok])
        self.fit_rows_ = int(ok.sum())
        return self

    def output_names(self, columns: list[str]) -> list[str]:
        return [*columns, *self.outputs]

    def _inputs(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return inputs_in_weeks(*(values[:, i] for i in self.positions_))

    def transform(self, X) -> np.ndarray:
        values = np.asarray(X, dtype=float)
        x, t_x, T = self._inputs(values)
        ok = np.isfinite(x) & np.isfinite(T) & (T > 0) & (x >= 0)
        alive, future, silent = (np.full(len(values), np.nan) for _ in range(3))
        if ok.any():
            p, weeks = self.params_, self.horizon_days / DAYS_PER_WEEK
            args = (x[ok], t_x[ok], T[ok])
            alive[ok] = p_alive(p, *args)
            future[ok] = expected_purchases(p, weeks, *args)
            silent[ok] = p_no_purchase(p, weeks, *args)
        return np.column_stack([values, alive, future, silent])
