"""The model the agent improves: a cubic with four coefficients."""

A = 0.0
B = 0.0
C = 0.0
D = 0.0


def predict(x: float) -> float:
    return A + B * x + C * x**2 + D * x**3
