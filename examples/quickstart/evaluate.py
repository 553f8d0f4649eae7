"""The evaluation (protected): mean squared error of model.py against fixed data.

The data come from a hidden curve with a little deterministic noise; the same
points on every run, so the metric is exact and the judge needs no statistics.
"""

import math

import model

POINTS = [i / 10 for i in range(-20, 21)]
TRUTH = [0.7 - 1.3 * x + 0.45 * x**2 + 0.2 * x**3 + 0.05 * math.sin(7 * x) for x in POINTS]

mse = sum((model.predict(x) - y) ** 2 for x, y in zip(POINTS, TRUTH, strict=True)) / len(POINTS)
print("---")
print(f"mse: {mse:.6f}")
print(f"points: {len(POINTS)}")
