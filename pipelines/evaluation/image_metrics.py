"""Image-set metrics on FID Inception features: Fréchet distance (FID), and precision and recall on
k-nearest-neighbour manifolds (Kynkäänniemi et al. 2019).

Set A is the reference ("real") set and set B the one being judged. Precision: the share of B's images that
fall inside A's manifold (fidelity). Recall: the share of A's images inside B's manifold (variety, coverage).
FID mixes both into one distance between two Gaussians fitted to the features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from pipelines.evaluation.options import BIAS_WARNING_BELOW, NEIGHBOURS


def _covariance_factor(features: np.ndarray) -> np.ndarray:
    """F with F.T @ F equal to the features' covariance (n - 1 in the denominator), as small as possible:
    the centred rows when there are fewer images than dimensions, else the covariance's square root."""
    centred = (features - features.mean(0)) / np.sqrt(len(features) - 1)
    if len(features) <= features.shape[1]:
        return centred
    values, vectors = np.linalg.eigh(centred.T @ centred)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """||mu_a - mu_b||² + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^½) of Gaussians fitted to two (N, D) feature sets.

    tr((S_a S_b)^½) is the sum of the singular values of F_a F_bᵀ for any F with Fᵀ F = S (its non-zero
    eigenvalues are those of S_a S_b, squared): exact and cheap when N < D, with no matrix square root of a
    singular D x D matrix (the usual scipy.linalg.sqrtm route), whose rounding leaves FID(A, A) visibly above 0.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("FID needs at least 2 images in each set (it fits a covariance).")
    factor_a, factor_b = _covariance_factor(a), _covariance_factor(b)
    cross = np.linalg.svd(factor_a @ factor_b.T, compute_uv=False).sum()
    mean_term = float(((a.mean(0) - b.mean(0)) ** 2).sum())
    distance = mean_term + (factor_a**2).sum() + (factor_b**2).sum() - 2 * cross
    return max(float(distance), 0.0)  # rounding can leave -1e-12 for identical sets


def _pairwise_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    squared = (x**2).sum(1)[:, None] + (y**2).sum(1)[None, :] - 2 * x @ y.T
    return np.sqrt(np.clip(squared, 0, None))


def manifold_radii(features: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Each image's distance to its k-th nearest other image of the same set: the radius of its ball."""
    if len(features) <= k:
        raise ValueError(f"Precision and recall need more than {k} images in each set (k = {k} neighbours).")
    distances = _pairwise_distances(features, features)
    return np.partition(distances, k, axis=1)[:, k]  # index 0 is the image itself, at distance 0


def coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """The share of `points` inside at least one ball (centre, radius)."""
    inside = _pairwise_distances(points, centres) <= radii[None, :]
    return float(inside.any(axis=1).mean())


def precision_recall(reference: np.ndarray, candidate: np.ndarray, k: int = NEIGHBOURS) -> tuple[float, float]:
    """(precision, recall) of `candidate` against `reference` on their k-nearest-neighbour manifolds."""
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    precision = coverage(candidate, reference, manifold_radii(reference, k))
    recall = coverage(reference, candidate, manifold_radii(candidate, k))
    return precision, recall


@dataclass(frozen=True)
class SetComparison:
    """Set B judged against reference set A."""

    fid: float
    precision: float
    recall: float
    images_a: int
    images_b: int
    neighbours: int = NEIGHBOURS

    @property
    def note(self) -> str:
        smaller = min(self.images_a, self.images_b)
        if smaller >= BIAS_WARNING_BELOW:
            return ""
        return (
            f"FID from {smaller} images a set is biased upwards (two samples of one distribution do not give 0): "
            f"compare FIDs only at equal set sizes; published FIDs use 10,000 to 50,000 images."
        )

    def as_json(self) -> dict:
        return {**asdict(self), "note": self.note}


def compare_features(features_a: np.ndarray, features_b: np.ndarray, k: int = NEIGHBOURS) -> SetComparison:
    precision, recall = precision_recall(features_a, features_b, k)
    return SetComparison(
        frechet_distance(features_a, features_b), precision, recall, len(features_a), len(features_b), k
    )


def compare_images(
    images_a: list[Image.Image],
    images_b: list[Image.Image],
    on_progress: Callable[[int, int], None] | None = None,
    k: int = NEIGHBOURS,
) -> SetComparison:
    """FID, precision and recall of two image lists (features from the registry's FID Inception, cached)."""
    from pipelines.core import registry

    inception = registry.load("fid-inception")
    features_a, features_b = inception.features_of_sets([images_a, images_b], on_progress)
    return compare_features(features_a, features_b, k)
