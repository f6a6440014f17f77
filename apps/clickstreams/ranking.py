"""Full-ranking metrics and the four baselines of the clickstreams app (Python and NumPy).

Every example has one relevant item, the next item; a recommender returns a ranked list.
Recall@20 (hit rate): the next item is in the top 20. MRR@20: 1/rank, 0 beyond 20.
NDCG@10: 1/log2(rank + 1), 0 beyond 10. Coverage@20: distinct items recommended in any
top 20, over the catalog size. The same accumulator backs the ingestion baselines, the TFMA
metrics of the Evaluator (``metrics.py``) and the benchmark, so all report one definition.

Baselines, fitted on the train split's item sequences (a session's, or a user's items up to
its last train next event); popularity counts the train next items:
- most popular: the train next items by count;
- first-order Markov (item-to-item co-occurrence): the items that followed the last item of
  the history in train, by count, filled up with the most popular items;
- session kNN (V-SKNN, Ludewig & Jannach 2018): the neighbours of a history are train
  sequences. The candidates are the ``sample_size`` most recent train sequences (by the
  time of their last event) sharing an item with the history. A candidate's similarity is
  the sum, over the distinct history items it contains, of the item's position weight:
  1 for the most recent history item, 0.1 less per step back, at least 0.1 (an item seen
  twice counts once, at its most recent position). The ``k`` most similar candidates (ties:
  the more recent) are the neighbours, and an item's score is the sum of the similarities
  of the neighbours containing it. The history's own items are left to the repeat
  baseline (session-rec's ``remind=False``; scoring them too gave a lower MRR@20 on the
  synthetic logs and on Online Retail). Filled up with the Markov list;
- repeat: the history's own items, the most frequent in the history first, ties by the
  most recent, filled up with the Markov list (logs where users consume items again).
Only catalog items are recommended. Ties break by popularity, then by item id, so the
baselines are deterministic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

TOP_K = 20  # Recall, MRR and coverage cut-off
NDCG_K = 10
METRICS: tuple[str, ...] = ("recall@20", "mrr@20", "ndcg@10", "coverage@20")


@dataclass
class RankingAccumulator:
    """Running sums of the ranking metrics over examples; mergeable (Beam combiners)."""

    count: int = 0
    hits: float = 0.0
    reciprocal_ranks: float = 0.0
    gains: float = 0.0
    recommended: set = field(default_factory=set)

    def add(self, ranked: Sequence, target) -> None:
        """Adds one example: the ranked recommendations and the true next item."""
        top = list(ranked[:TOP_K])
        self.count += 1
        self.recommended.update(top)
        try:
            rank = top.index(target) + 1
        except ValueError:
            return
        self.hits += 1.0
        self.reciprocal_ranks += 1.0 / rank
        if rank <= NDCG_K:
            self.gains += 1.0 / math.log2(rank + 1)

    def merge(self, other: RankingAccumulator) -> RankingAccumulator:
        """Adds another accumulator's examples into this one; returns self."""
        self.count += other.count
        self.hits += other.hits
        self.reciprocal_ranks += other.reciprocal_ranks
        self.gains += other.gains
        self.recommended |= other.recommended
        return self

    def result(self, catalog_size: int = 0) -> dict[str, float]:
        """The metrics; coverage is over ``catalog_size`` items (NaN when unknown)."""
        n = max(self.count, 1)
        return {
            "recall@20": self.hits / n,
            "mrr@20": self.reciprocal_ranks / n,
            "ndcg@10": self.gains / n,
            "coverage@20": (len(self.recommended) / catalog_size if catalog_size > 0
                            else float("nan")),
        }


def _filled(first: tuple[str, ...], fallback: Sequence[str]) -> tuple[str, ...]:
    """``first`` then the items of ``fallback`` not in it, up to TOP_K items."""
    if len(first) >= TOP_K:
        return first[:TOP_K]
    seen = set(first)
    return first + tuple(i for i in fallback if i not in seen)[:TOP_K - len(first)]


def _position_weights(history: Sequence[str]) -> dict[str, int]:
    """V-SKNN's linear decay in tenths: 10 for the last history item, one less per step
    back, at least 1; a repeated item keeps its most recent weight. Integers keep sums of
    weights exact, so equal scores tie exactly."""
    weights: dict[str, int] = {}
    for back, item in enumerate(reversed(history)):
        weights.setdefault(item, max(1, 10 - back))
    return weights


@dataclass(frozen=True)
class Baselines:
    """The four baseline recommenders, fitted on the train sequences (see the module)."""

    catalog: tuple[str, ...]  # the catalog items by popularity, the most popular first
    popularity: dict[str, int]  # catalog item -> its position in ``catalog``
    successors: dict[str, tuple[str, ...]]  # last item -> up to TOP_K next items, best first
    # kNN: the train sequences by recency (0: the oldest). holders: item -> the indices of
    # the sequences holding it, ascending; members[offsets[s]:offsets[s + 1]]: the distinct
    # catalog items (positions in ``catalog``) of sequence s.
    holders: dict[str, np.ndarray]
    members: np.ndarray
    offsets: np.ndarray
    k: int
    sample_size: int

    @property
    def popular(self) -> tuple[str, ...]:
        """The TOP_K most popular items, best first."""
        return self.catalog[:TOP_K]

    def most_popular(self, history: Sequence[str]) -> tuple[str, ...]:
        """The most popular items, whatever the history."""
        del history
        return self.popular

    def markov(self, history: Sequence[str]) -> tuple[str, ...]:
        """The items that followed the history's last item, then the most popular ones."""
        return _filled(self.successors.get(history[-1], ()) if history else (), self.popular)

    def neighbours(self, history: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest train sequences (indices) and their similarities in tenths, the most
        similar first (ties: the more recent)."""
        weights = _position_weights(history)
        # The sample_size most recent candidates are each among the sample_size most recent
        # holders of every history item they hold, so their sums are complete.
        found = [(self.holders[item][-self.sample_size:], w) for item, w in weights.items()
                 if item in self.holders]
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        indices = np.concatenate([held for held, _ in found])
        tenths = np.repeat([w for _, w in found], [len(held) for held, _ in found])
        similarity = np.bincount(indices, tenths).astype(np.int64)
        candidates = np.flatnonzero(similarity)[-self.sample_size:]
        # One integer orders by similarity, then recency.
        key = similarity[candidates] * len(similarity) + candidates
        top = np.argsort(-key, kind="stable")[:self.k]
        return candidates[top], similarity[candidates[top]]

    def _knn_tenths(self, history: Sequence[str]) -> np.ndarray:
        """Every catalog item's kNN score in tenths (by position in ``catalog``); 0 for the
        history's own items."""
        chosen, similarity = self.neighbours(history)
        spans = [self.members[self.offsets[s]:self.offsets[s + 1]] for s in chosen.tolist()]
        if not spans:
            return np.zeros(len(self.catalog), np.int64)
        tenths = np.bincount(np.concatenate(spans),
                             np.repeat(similarity, [len(span) for span in spans]),
                             minlength=len(self.catalog)).astype(np.int64)
        tenths[[self.popularity[item] for item in set(history) if item in self.popularity]] = 0
        return tenths

    def sknn_scores(self, history: Sequence[str]) -> dict[str, float]:
        """Catalog item -> the summed similarity of the neighbours holding it (the items
        scored, the history's own left out)."""
        tenths = self._knn_tenths(history)
        return {self.catalog[i]: tenths[i] / 10 for i in np.flatnonzero(tenths).tolist()}

    def sknn(self, history: Sequence[str]) -> tuple[str, ...]:
        """The kNN items by score, ties by popularity, then the Markov list."""
        tenths = self._knn_tenths(history)
        scored = np.flatnonzero(tenths)
        # One integer orders by score, then popularity (a lower position in the catalog).
        key = tenths[scored] * len(self.catalog) - scored
        if len(scored) > TOP_K:
            keep = np.argpartition(-key, TOP_K)[:TOP_K]
            scored, key = scored[keep], key[keep]
        best = tuple(self.catalog[i] for i in scored[np.argsort(-key)].tolist())
        return _filled(best, self.markov(history))

    def repeat(self, history: Sequence[str]) -> tuple[str, ...]:
        """The history's catalog items by count, ties by the most recent, then the Markov
        list."""
        counts = Counter(item for item in history if item in self.popularity)
        latest = {item: position for position, item in enumerate(history)}
        own = sorted(counts, key=lambda item: (-counts[item], -latest[item]))
        return _filled(tuple(own), self.markov(history))


def fit_baselines(train_sequences: Iterable[Sequence[str]],
                  catalog: Iterable[str] | None = None, *,
                  ends: Sequence[float] | None = None, k: int = 100,
                  sample_size: int = 500) -> Baselines:
    """Fits the baselines on the train item sequences (oldest item first). ``ends`` is when
    each sequence ended, the recency of the kNN sample (default: the order given, the last
    the most recent). Only items of ``catalog`` (default: every train next item) are
    recommended; ``k`` neighbours out of ``sample_size`` recent candidates."""
    if k < 1:
        raise ValueError(f"k: expected >= 1 neighbours, got {k}")
    if sample_size < 1:
        raise ValueError(f"sample_size: expected >= 1 candidates, got {sample_size}")
    sequences = [tuple(s) for s in train_sequences]
    if ends is not None:
        if len(ends) != len(sequences):
            raise ValueError(f"ends: expected one time per train sequence ({len(sequences)}), "
                             f"got {len(ends)}")
        sequences = [sequences[i] for i in sorted(range(len(sequences)), key=ends.__getitem__)]
    counts = Counter(item for s in sequences for item in s[1:])
    allowed = set(counts) if catalog is None else set(catalog)
    order = sorted(allowed, key=lambda item: (-counts[item], item))
    popularity = {item: i for i, item in enumerate(order)}
    following: dict[str, Counter] = {}
    holders: dict[str, list[int]] = {}
    members: list[list[int]] = []
    for index, s in enumerate(sequences):
        for last, nxt in zip(s[:-1], s[1:], strict=True):
            if nxt in allowed:
                following.setdefault(last, Counter())[nxt] += 1
        distinct = list(dict.fromkeys(s))
        for item in distinct:
            holders.setdefault(item, []).append(index)
        members.append([popularity[item] for item in distinct if item in popularity])
    successors = {
        last: tuple(sorted(c, key=lambda item: (-c[item], popularity[item]))[:TOP_K])
        for last, c in following.items()}
    return Baselines(
        catalog=tuple(order), popularity=popularity, successors=successors,
        holders={item: np.array(indices, np.int64) for item, indices in holders.items()},
        members=np.array([i for m in members for i in m], np.int64),
        offsets=np.cumsum([0] + [len(m) for m in members], dtype=np.int64),
        k=k, sample_size=sample_size)


def baseline_metrics(baselines: Baselines, eval_examples: Iterable[tuple[Sequence[str], str]],
                     catalog_size: int) -> dict[str, dict[str, float]]:
    """The four baselines' metrics on (history, next item) eval examples."""
    recommenders = {"most_popular": baselines.most_popular, "markov": baselines.markov,
                    "sknn": baselines.sknn, "repeat": baselines.repeat}
    accs = {name: RankingAccumulator() for name in recommenders}
    for history, target in eval_examples:
        for name, recommend in recommenders.items():
            accs[name].add(recommend(history), target)
    return {name: acc.result(catalog_size) for name, acc in accs.items()}


def better_baseline(metrics: dict[str, dict[str, float]], metric: str = "mrr@20") -> str:
    """The baseline with the highest ``metric`` (by default MRR@20, the one the model must
    beat); ties by name."""
    return max(sorted(metrics), key=lambda name: metrics[name][metric])


def _ranking_metric(name: str, labels, ranked) -> float:
    accumulator = RankingAccumulator()
    for target, items in zip(labels, ranked, strict=True):
        accumulator.add([i.decode() if isinstance(i, bytes) else str(i) for i in items],
                        target.decode() if isinstance(target, bytes) else str(target))
    return accumulator.result()[name] if accumulator.count else math.nan


def mrr_at_20(labels, ranked) -> float:
    """MRR@20 of ranked item lists against the next items (the report's bootstrap)."""
    return _ranking_metric("mrr@20", labels, ranked)


def recall_at_20(labels, ranked) -> float:
    """Recall@20 of ranked item lists against the next items."""
    return _ranking_metric("recall@20", labels, ranked)
