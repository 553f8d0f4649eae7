"""How much true gain a two-look keep rule can make at equal runs, at best: a ceiling for judge.py's cases.

Issue 23 asks for 1.3× the final true gain of the rule of issue 13 at equal runs (150 runs) with
no more than 2% of the no-ops kept. This script asks what the *ideal* rule of the shape overnight
uses (screen on one run, keep on a second run, one follow-up run per keep) could make on each of
`benchmarks/judge.py`'s Gaussian cases, under assumptions that all favour it:

* the noise σ is known exactly (the real rule estimates it, with a t quantile, from the runs so far);
* the best it compares with is measured on ``--best-runs`` runs **without selection bias** (the
  real best's runs include the two that got it kept: a lucky best, ~0.4σ too good in `every 4th`);
* its two thresholds are tuned for the case it is scored on, knowing the case's mix of proposals
  (the real rule has one setting for every task), to keep exactly ``--noops`` of the no-ops.

With ``--paid-best`` the best's runs are paid for: a keep is followed by ``--best-runs`` fresh runs (no
selection bias, as above, but at their cost), the runs that got it kept set aside. Without it, only one
follow-up run is paid for and the other runs of the best are free and unbiased, which no rule has.

A candidate's first run x₁ passes the screen when (x₁ − b)/√(1 + 1/n) ≥ c₁ (b: the best's estimate
on n runs); it is kept when the mean of its two runs passes (x̄ − b)/√(1/2 + 1/n) ≥ c₂, and a keep
costs f follow-up runs (1, or n with ``--paid-best``). Per proposal that is 1 + P(screen) + f·P(keep) runs, and the final true gain
at equal runs is (runs − 1) / (runs per proposal) × the expected true gain per proposal. For
``--best-runs`` a very large number it is the rule that knows the best's true value.

The largest gain over (c₁, c₂) with the no-op rate held is the ceiling. Monte Carlo, seeded:

    python benchmarks/judge_bound.py  # --runs 150 --noops 0.02 --best-runs 3
"""

from __future__ import annotations

import argparse

import numpy as np

# judge.py's cases as (share, true gain in σ; positive is better): its MIXES and every_4th
CASES: dict[str, list[tuple[float, float]]] = {
    "every 4th": [(0.75, 0.0), (0.25, 2.0)],
    "typical": [(9 / 20, 0.0), (4 / 20, -1.0), (4 / 20, -2.0), (1 / 20, 1.0), (1 / 20, 2.0), (1 / 20, 4.0)],
    "generous": [(10 / 20, 0.0), (2 / 20, 1.0), (2 / 20, 2.0), (2 / 20, 4.0), (4 / 20, -2.0)],
}
# 1.3× the rule of issue 13 at equal runs (README, "At equal runs": 20.96σ, 20.55σ, 32.16σ)
TARGET = {"every 4th": 1.3 * 20.96, "typical": 1.3 * 20.55, "generous": 1.3 * 32.16}
# overnight's rule today at equal runs (README, same table)
TODAY = {"every 4th": 20.82, "typical": 26.30, "generous": 46.18}


def _draws(samples: int, best_runs: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    best_error = rng.normal(0.0, np.sqrt(1.0 / best_runs), samples)
    return best_error, rng.normal(0.0, 1.0, samples), rng.normal(0.0, 1.0, samples)


def _rates(effect: float, c1: float, c2: float, best_runs: float, draws: tuple[np.ndarray, ...]) -> tuple[float, float]:
    """P(screen passed), P(kept) for a proposal of true ``effect`` (in σ, positive = better)."""
    best_error, first, second = draws
    screen = (effect + first - best_error) / np.sqrt(1 + 1 / best_runs) >= c1
    both = (effect + (first + second) / 2 - best_error) / np.sqrt(0.5 + 1 / best_runs) >= c2
    return float(screen.mean()), float((screen & both).mean())


def ceiling(
    case: str, runs: int, noops: float, best_runs: float, samples: int, seed: int, paid: bool = False
) -> dict[str, float]:
    """The best (c₁, c₂) for ``case`` and what it makes; see the module docstring."""
    follow_up = best_runs if paid else 1
    draws = _draws(samples, best_runs, seed)
    found: dict[str, float] = {"gain": -np.inf}
    for c1 in np.arange(-0.5, 2.51, 0.1):
        low, high = -2.0, 6.0  # c₂ that keeps exactly `noops` of the no-ops (or the lowest that keeps fewer)
        for _ in range(40):
            middle = (low + high) / 2
            low, high = (middle, high) if _rates(0.0, c1, middle, best_runs, draws)[1] > noops else (low, middle)
        c2 = high
        per_proposal = gain = kept_noops = 0.0
        kept: dict[float, float] = {}
        for share, effect in CASES[case]:
            screened, keeps = _rates(effect, c1, c2, best_runs, draws)
            per_proposal += share * (1 + screened + follow_up * keeps)
            gain += share * keeps * effect
            kept[effect] = keeps
            kept_noops = keeps if effect == 0 else kept_noops
        total = (runs - 1) / per_proposal * gain
        if total > found["gain"]:
            wins = {f"{effect:g}σ kept": kept[effect] for _, effect in CASES[case] if effect > 0}
            found = {"gain": total, "c1": c1, "c2": c2, "runs per proposal": per_proposal,
                     "no-ops kept": kept_noops, **wins}  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=150, help="runs at equal runs, the baseline's one included")
    parser.add_argument("--noops", type=float, default=0.02, help="share of the no-ops the rule may keep")
    parser.add_argument("--best-runs", type=float, default=3, help="runs the best is known on (1e9: known exactly)")
    parser.add_argument("--paid-best", action="store_true", help="the best's runs are fresh runs after a keep")
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"ceiling of a two-look rule at {args.runs} runs, ≤ {args.noops:.0%} no-ops kept, "
          f"σ known, the best on {args.best_runs:g} unbiased runs{' paid for' if args.paid_best else ''}, "
          "thresholds tuned per case")  # fmt: skip
    print("| case | ceiling | target (1.3× issue 13) | today | c₁ | c₂ | runs per proposal | wins kept |")
    print("|---|---|---|---|---|---|---|---|")
    for case in CASES:
        found = ceiling(case, args.runs, args.noops, args.best_runs, args.samples, args.seed, args.paid_best)
        wins = ", ".join(
            f"{k.split()[0]} {v:.0%}" for k, v in found.items() if k.endswith("kept") and "no-ops" not in k
        )
        print(
            f"| {case} | {found['gain']:.1f}σ | {TARGET[case]:.1f}σ | {TODAY[case]:.1f}σ | {found['c1']:.1f} "
            f"| {found['c2']:.2f} | {found['runs per proposal']:.2f} | {wins} |"
        )


if __name__ == "__main__":
    main()
