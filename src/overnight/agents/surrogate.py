"""A quadratic model of the metric near the best, for the tune agent's steps.

Close to an optimum most metrics are smooth and curve like a bowl on each constant's
scale: a quadratic fitted to the measured trials (weighted toward the best, ridge-damped)
says which of several candidate steps looks most promising, and where the bowl's bottom
lies within the step's reach. With too few trials for the full quadratic it fits the
terms of each constant alone; with fewer still, no model, and the step is a random one.

All coordinates are in the unit interval of each dimension's scale (see
:meth:`overnight.agents.space.Dimension.to_unit`); lower values are better.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def _features(z: Array, full: bool) -> Array:
    """The terms of the quadratic at points ``z`` (rows): 1, z_i, z_i², and z_i z_j when ``full``."""
    columns = [np.ones(len(z)), *z.T, *(z.T**2)]
    if full:
        d = z.shape[1]
        columns += [z[:, i] * z[:, j] for i in range(d) for j in range(i + 1, d)]
    return np.stack(columns, axis=1)


class Quadratic:
    """A quadratic in the unit coordinates, fitted around ``center``."""

    def __init__(self, points: Array, values: Array, center: Array, reach: float) -> None:
        self.center = center
        d = points.shape[1]
        self.full = len(points) >= (d + 1) * (d + 2) // 2
        z = points - center
        # Trials far from the best say less about the bowl it sits in; the measured spread sets the scale.
        near = np.exp(-np.sum(z**2, axis=1) / (2 * max(reach, 0.05) ** 2 * d))
        spread = float(np.std(values)) or 1.0
        weights = np.sqrt(near + 0.05)
        terms = _features(z, self.full)
        lhs = terms * weights[:, None]
        rhs = (values - float(np.min(values))) / spread * weights
        ridge = 1e-9 * np.eye(terms.shape[1])
        ridge[0, 0] = 0.0
        self.coef: Array = np.linalg.solve(lhs.T @ lhs + ridge, lhs.T @ rhs)

    def predict(self, points: Array) -> Array:
        result: Array = _features(points - self.center, self.full) @ self.coef
        return result

    def bottom(self, subset: list[int], reach: float) -> Array | None:
        """The lowest point of the model moving only the coordinates ``subset``, within ``reach``
        of the center (None when the model curves down there: it has no bottom to offer)."""
        d = len(self.center)
        grad = self.coef[1 : 1 + d].copy()
        hess = np.diag(2 * self.coef[1 + d : 1 + 2 * d])
        if self.full:
            k = 1 + 2 * d
            for i in range(d):
                for j in range(i + 1, d):
                    hess[i, j] = hess[j, i] = self.coef[k]
                    k += 1
        g, h = grad[subset], hess[np.ix_(subset, subset)]
        if np.any(np.linalg.eigvalsh(h) <= 1e-9):
            return None
        move = -np.linalg.solve(h, g)
        length = float(np.linalg.norm(move))
        if length > reach:
            move *= reach / length
        point = self.center.copy()
        point[subset] += move
        return point


def fit(points: Array, values: Array, center: Array, reach: float) -> Quadratic | None:
    """A model from the measured trials, or None when there are too few for even the diagonal one."""
    if len(points) < 2 * points.shape[1] + 2 or float(np.ptp(values)) == 0.0:
        return None
    try:
        return Quadratic(points, values, center, reach)
    except np.linalg.LinAlgError:
        return None
