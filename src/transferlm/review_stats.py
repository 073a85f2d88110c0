"""Statistics for the blind review: means with bootstrap intervals, pairwise win rates, Bradley-Terry.

Every resampling uses a fixed seed, so the same ratings always give the same intervals.
"""

from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0


def _bounds(values: np.ndarray) -> list[float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    return [float(low), float(high)]


def mean_interval(ratings: list[int]) -> dict:
    """Mean of the ratings and a percentile bootstrap interval over the ratings."""
    values = np.asarray(ratings, dtype=float)
    rng = np.random.default_rng(SEED)
    means = values[rng.integers(0, len(values), size=(RESAMPLES, len(values)))].mean(axis=1)
    return {"mean": float(values.mean()), "ci": _bounds(means), "n": len(values)}


def bradley_terry(wins: np.ndarray) -> np.ndarray:
    """Log-strengths (mean 0) from wins[i, j] = points of i against j, a tie counting half to each.

    One virtual tie between every two models that met keeps a model that never won (or never lost) at
    a finite strength; with two models the fitted P(i beats j) is (wins_i + 0.5) / (games + 1).
    """
    games = wins + wins.T
    met = games > 0
    wins = wins + 0.5 * met
    games = games + 1.0 * met
    strength = np.ones(len(wins))
    for _ in range(10_000):  # Hunter's MM updates: each one raises the likelihood
        denominator = (games / (strength[:, None] + strength[None, :])).sum(axis=1)
        updated = np.where(denominator > 0, wins.sum(axis=1) / np.where(denominator > 0, denominator, 1), 1.0)
        updated /= np.exp(np.log(updated).mean())
        if np.abs(updated - strength).max() < 1e-10:
            strength = updated
            break
        strength = updated
    log_strength = np.log(strength)
    return log_strength - log_strength.mean()


def pairwise(comparisons: list[tuple[str, str, float]], models: list[str]) -> dict:
    """Win rates and a Bradley-Terry ranking from (model_a, model_b, points of a: 1, 0.5 or 0)."""
    index = {name: i for i, name in enumerate(models)}
    a = np.array([index[c[0]] for c in comparisons])
    b = np.array([index[c[1]] for c in comparisons])
    points = np.array([c[2] for c in comparisons], dtype=float)

    def matrix(pick: np.ndarray) -> np.ndarray:
        wins = np.zeros((len(models), len(models)))
        np.add.at(wins, (a[pick], b[pick]), points[pick])
        np.add.at(wins, (b[pick], a[pick]), 1 - points[pick])
        return wins

    def rates(wins: np.ndarray) -> np.ndarray:
        games = (wins + wins.T).sum(axis=1)
        return np.divide(wins.sum(axis=1), games, out=np.full(len(models), np.nan), where=games > 0)

    wins = matrix(np.arange(len(comparisons)))
    rng = np.random.default_rng(SEED)
    picks = rng.integers(0, len(comparisons), size=(RESAMPLES, len(comparisons)))
    boot_rates = np.array([rates(matrix(pick)) for pick in picks])
    boot_bt = np.array([bradley_terry(matrix(pick)) for pick in picks])
    strength = bradley_terry(wins)
    win_rate = rates(wins)

    per_model = {}
    for name, i in index.items():
        games = (wins + wins.T)[i].sum()
        if games == 0:
            continue
        finite = boot_rates[:, i][~np.isnan(boot_rates[:, i])]
        per_model[name] = {
            "comparisons": int(round(games)),
            "win_rate": float(win_rate[i]),
            "win_rate_ci": _bounds(finite),
            "strength": float(strength[i]),
            "strength_ci": _bounds(boot_bt[:, i]),
        }
    ranking = sorted(per_model, key=lambda name: -per_model[name]["strength"])
    for rank, name in enumerate(ranking, start=1):
        per_model[name]["rank"] = rank

    by_pair = []
    for i, first in enumerate(models):
        for j in range(i + 1, len(models)):
            mask = ((a == i) & (b == j)) | ((a == j) & (b == i))
            if not mask.any():
                continue
            first_points = np.where(a[mask] == i, points[mask], 1 - points[mask])
            by_pair.append({
                "models": [first, models[j]],
                "comparisons": int(mask.sum()),
                "wins": [int((first_points == 1).sum()), int((first_points == 0).sum())],
                "ties": int((first_points == 0.5).sum()),
                "win_rate": float(first_points.mean()),  # of the first model, a tie counting half
            })  # fmt: skip
    return {"comparisons": len(comparisons), "models": per_model, "ranking": ranking, "pairs": by_pair}
