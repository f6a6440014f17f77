"""Full-ranking metrics and the two baselines of the clickstreams app (pure Python).

Every example has one relevant item, the next item; a recommender returns a ranked list.
Recall@20 (hit rate): the next item is in the top 20. MRR@20: 1/rank, 0 beyond 20.
NDCG@10: 1/log2(rank + 1), 0 beyond 10. Coverage@20: distinct items recommended in any
top 20, over the catalog size. The same accumulator backs the ingestion baselines, the TFMA
metrics of the Evaluator (``metrics.py``) and the benchmark, so all report one definition.

Baselines, fitted on the train split's (last history item, next item) pairs:
- most popular: the train next items by count;
- first-order Markov (item-to-item co-occurrence): the items that followed the last item of
  the history in train, by count, filled up with the most popular items.
Ties break by popularity, then by item id, so the baselines are deterministic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Baselines:
    """Most-popular and first-order Markov recommenders fitted on train transitions."""

    popular: tuple[str, ...]  # the TOP_K most popular items, best first
    successors: dict[str, tuple[str, ...]]  # last item -> up to TOP_K next items, best first

    def most_popular(self, history: Sequence[str]) -> tuple[str, ...]:
        """The most popular items, whatever the history."""
        del history
        return self.popular

    def markov(self, history: Sequence[str]) -> tuple[str, ...]:
        """The items that followed the history's last item, then the most popular ones."""
        followed = self.successors.get(history[-1], ()) if history else ()
        if len(followed) >= TOP_K:
            return followed
        seen = set(followed)
        return followed + tuple(i for i in self.popular if i not in seen)[:TOP_K - len(followed)]


def fit_baselines(train_pairs: Iterable[tuple[str, str]],
                  catalog: Iterable[str] | None = None) -> Baselines:
    """Fits both baselines on (last history item, next item) pairs. Only items of
    ``catalog`` (default: every train next item) are recommended."""
    pairs = list(train_pairs)
    counts = Counter(nxt for _, nxt in pairs)
    allowed = set(counts) if catalog is None else set(catalog)
    order = sorted(allowed, key=lambda item: (-counts[item], item))
    popularity = {item: i for i, item in enumerate(order)}
    following: dict[str, Counter] = {}
    for last, nxt in pairs:
        if nxt in allowed:
            following.setdefault(last, Counter())[nxt] += 1
    successors = {
        last: tuple(sorted(c, key=lambda item: (-c[item], popularity[item], item))[:TOP_K])
        for last, c in following.items()}
    return Baselines(popular=tuple(order[:TOP_K]), successors=successors)


def baseline_metrics(baselines: Baselines, eval_examples: Iterable[tuple[Sequence[str], str]],
                     catalog_size: int) -> dict[str, dict[str, float]]:
    """Both baselines' metrics on (history, next item) eval examples."""
    accs = {"most_popular": RankingAccumulator(), "markov": RankingAccumulator()}
    for history, target in eval_examples:
        accs["most_popular"].add(baselines.most_popular(history), target)
        accs["markov"].add(baselines.markov(history), target)
    return {name: acc.result(catalog_size) for name, acc in accs.items()}


def better_baseline(metrics: dict[str, dict[str, float]]) -> str:
    """The baseline with the higher MRR@20 (the one the model must beat)."""
    return max(sorted(metrics), key=lambda name: metrics[name]["mrr@20"])


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
