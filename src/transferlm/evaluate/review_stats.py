"""Statistics for the blind review: means with bootstrap intervals, pairwise win rates, Bradley-Terry.

Every resampling uses a fixed seed, so the same ratings always give the same intervals.
"""

from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0
# The held-out text that follows each auto prompt: in the blind review beside the models, never labelled.
REFERENCE = "reference"


def _bounds(values: np.ndarray) -> list[float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    return [float(low), float(high)]


def mean_interval(ratings: list[int]) -> dict:
    """Mean of the ratings and a percentile bootstrap interval over the ratings."""
    values, counts = np.unique(np.asarray(ratings, dtype=float), return_counts=True)
    n = int(counts.sum())
    rng = np.random.default_rng(SEED)
    # Drawing n ratings with replacement is drawing how often each distinct value comes up: the same
    # bootstrap, in memory that grows with the distinct values (at most 5), not with the ratings.
    means = rng.multinomial(n, counts / n, size=RESAMPLES) @ values / n
    return {"mean": float(values @ counts / n), "ci": _bounds(means), "n": n}


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
    # Comparisons with the same models and outcome are interchangeable: keep each kind once with its
    # count, and resample counts (as mean_interval does), so memory does not grow with the comparisons.
    kinds, counts = np.unique([(index[c[0]], index[c[1]], c[2]) for c in comparisons], axis=0, return_counts=True)
    a, b, points = kinds[:, 0].astype(int), kinds[:, 1].astype(int), kinds[:, 2]

    def matrix(weight: np.ndarray) -> np.ndarray:
        wins = np.zeros((len(models), len(models)))
        np.add.at(wins, (a, b), weight * points)
        np.add.at(wins, (b, a), weight * (1 - points))
        return wins

    def rates(wins: np.ndarray) -> np.ndarray:
        games = (wins + wins.T).sum(axis=1)
        return np.divide(wins.sum(axis=1), games, out=np.full(len(models), np.nan), where=games > 0)

    wins = matrix(counts)
    rng = np.random.default_rng(SEED)
    draws = rng.multinomial(len(comparisons), counts / len(comparisons), size=RESAMPLES)
    boot_rates = np.array([rates(matrix(draw)) for draw in draws])
    boot_bt = np.array([bradley_terry(matrix(draw)) for draw in draws])
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
            first_points, times = np.where(a[mask] == i, points[mask], 1 - points[mask]), counts[mask]
            by_pair.append({
                "models": [first, models[j]],
                "comparisons": int(times.sum()),
                "wins": [int(times[first_points == 1].sum()), int(times[first_points == 0].sum())],
                "ties": int(times[first_points == 0.5].sum()),
                "win_rate": float(first_points @ times / times.sum()),  # of the first model, a tie counting half
            })  # fmt: skip
    result = {"comparisons": len(comparisons), "models": per_model, "ranking": ranking, "pairs": by_pair}
    if REFERENCE in index:
        result["against_reference"] = fooled_rates(by_pair)
    return result


def fooled_rates(by_pair: list[dict]) -> dict:
    """Per model, the share of its comparisons with the real held-out text (`reference`) in which the reader
    preferred the model, a tie counting half: how often it fooled the reader, with a 95% bootstrap interval."""
    rng = np.random.default_rng(SEED)
    rates = {}
    for pair in by_pair:
        if REFERENCE not in pair["models"]:
            continue
        mine = 1 - pair["models"].index(REFERENCE)  # the model's side of the pair
        wins, losses, ties = pair["wins"][mine], pair["wins"][1 - mine], pair["ties"]
        total = wins + losses + ties
        draws = rng.multinomial(total, [wins / total, losses / total, ties / total], size=RESAMPLES)
        rates[pair["models"][mine]] = {"comparisons": total, "fooled_rate": (wins + ties / 2) / total,
                                       "fooled_rate_ci": _bounds((draws[:, 0] + draws[:, 2] / 2) / total)}
    return rates
