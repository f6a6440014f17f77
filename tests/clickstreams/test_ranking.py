"""Ranking metrics and the four baselines on tiny examples computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apps.clickstreams import data, ranking
from apps.clickstreams.config import DataConfig

# Train sequences of two items, so each is one transition (last history item, next item):
# next-item counts B 2, C 2, D 1, so the most popular list is B, C, D (ties by id); A was
# followed by B twice and C once.
TRAIN = [("A", "B"), ("A", "B"), ("A", "C"), ("B", "C"), ("C", "D")]
EVAL = [
    (("X", "A"), "C"),  # markov [B, C, D]: rank 2; popular [B, C, D]: rank 2
    (("B",), "C"),  # markov [C, B, D]: rank 1; popular: rank 2
    (("Z",), "D"),  # unseen last item: markov falls back to popular: rank 3
    (("C",), "A"),  # A is never a next item: a miss for both
]


def test_baselines_rank_as_computed_by_hand():
    baselines = ranking.fit_baselines(TRAIN)
    assert baselines.popular == ("B", "C", "D")
    assert baselines.markov(("X", "A")) == ("B", "C", "D")
    assert baselines.markov(("B",)) == ("C", "B", "D")
    assert baselines.markov(("Z",)) == ("B", "C", "D")
    assert baselines.markov(()) == ("B", "C", "D")

    metrics = ranking.baseline_metrics(baselines, EVAL, catalog_size=3)
    markov, popular = metrics["markov"], metrics["most_popular"]
    assert markov["recall@20"] == pytest.approx(3 / 4)
    assert markov["mrr@20"] == pytest.approx((1 / 2 + 1 + 1 / 3 + 0) / 4)
    assert markov["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 + 1 / 2) / 4)
    assert markov["coverage@20"] == pytest.approx(1.0)
    assert popular["recall@20"] == pytest.approx(3 / 4)
    assert popular["mrr@20"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 3) / 4)
    assert popular["ndcg@10"] == pytest.approx((2 / math.log2(3) + 1 / 2) / 4)
    # kNN on (B,): the neighbours holding B are (A, B) twice and (B, C); B is the history's
    # own, so C scores 1 and leads, then the Markov list: [C, B, D], rank 1, as Markov.
    assert baselines.sknn(("B",)) == ("C", "B", "D")
    assert metrics["sknn"]["mrr@20"] == pytest.approx(markov["mrr@20"])
    assert metrics["repeat"]["mrr@20"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 3) / 4)
    # Markov and kNN tie on MRR@20: the first name wins.
    assert ranking.better_baseline(metrics) == "markov"


def test_catalog_limits_what_baselines_recommend():
    baselines = ranking.fit_baselines(TRAIN, catalog={"B", "D"})
    assert baselines.popular == ("B", "D")
    assert baselines.markov(("A",)) == ("B", "D")
    assert baselines.sknn(("A",)) == ("B", "D")  # the neighbours' B, then Markov's D
    assert baselines.repeat(("C", "A")) == ("B", "D")


# Train sequences by recency (S0 the oldest): next-item counts b 2, e 2, f 2, a 1, c 1, d 1,
# h 1, so the catalog by popularity is b, e, f, a, c, d, h (ties by id); g is only ever a
# first item, so it is not in the catalog.
SEQUENCES = [
    ("a", "b", "c"),  # S0
    ("b", "d", "e"),  # S1
    ("c", "a", "e", "f"),  # S2
    ("d", "b", "f"),  # S3
    ("g", "h"),  # S4
]
# History (a, b, c): position weights c 1.0 (the last), b 0.9, a 0.8. The candidates share
# an item with it: S0 (a, b, c) 0.8 + 0.9 + 1.0 = 2.7, S1 (b) 0.9, S2 (c, a) 1.8, S3 (b) 0.9;
# S4 shares nothing. Scores leave out the history's own items (a, b, c).
HISTORY = ("a", "b", "c")
# Markov after c: a (S2), then the popular items.
MARKOV_AFTER_C = ("a", "b", "e", "f", "c", "d", "h")


def test_sknn_as_computed_by_hand():
    baselines = ranking.fit_baselines(SEQUENCES)
    assert baselines.catalog == ("b", "e", "f", "a", "c", "d", "h")
    assert baselines.markov(HISTORY) == MARKOV_AFTER_C
    # k=100: all four candidates. S1 adds 0.9 to d and e; S2 1.8 to e and f; S3 0.9 to d
    # and f: e 2.7, f 2.7 (a tie, e the more popular), d 1.8; then Markov's a, b, c, h.
    chosen, tenths = baselines.neighbours(HISTORY)
    assert chosen.tolist() == [0, 2, 3, 1] and tenths.tolist() == [27, 18, 9, 9]
    assert baselines.sknn_scores(HISTORY) == {"e": 2.7, "f": 2.7, "d": 1.8}
    assert baselines.sknn(HISTORY) == ("e", "f", "d", "a", "b", "c", "h")

    # k=3: S1 and S3 tie at 0.9 and the more recent S3 is kept: f 1.8 + 0.9 = 2.7, e 1.8,
    # d 0.9.
    nearest = ranking.fit_baselines(SEQUENCES, k=3)
    assert nearest.sknn_scores(HISTORY) == {"f": 2.7, "e": 1.8, "d": 0.9}
    assert nearest.sknn(HISTORY) == ("f", "e", "d", "a", "b", "c", "h")

    # An unknown history has no neighbours: the Markov list (here the popular items).
    assert baselines.sknn(("zz",)) == baselines.popular


def test_sknn_samples_only_the_most_recent_candidates():
    # sample_size=2: only S2 and S3 are candidates, however similar S0 is: f 1.8 + 0.9,
    # e 1.8, d 0.9.
    two = ranking.fit_baselines(SEQUENCES, sample_size=2)
    assert two.neighbours(HISTORY)[0].tolist() == [2, 3]
    assert two.sknn_scores(HISTORY) == {"f": 2.7, "e": 1.8, "d": 0.9}
    # sample_size=1: S3 alone: d 0.9 and f 0.9 tie, f the more popular.
    one = ranking.fit_baselines(SEQUENCES, sample_size=1)
    assert one.sknn(HISTORY) == ("f", "d", "a", "b", "e", "c", "h")
    # Recency is the time a sequence ended when given, not the order of the list.
    ends = [1.0, 2.0, 3.0, 4.0, 5.0]
    shuffled = ranking.fit_baselines(SEQUENCES[::-1], ends=ends[::-1], sample_size=1)
    assert shuffled.sknn(HISTORY) == one.sknn(HISTORY)


def test_repeat_ranks_the_history_by_count_then_recency():
    baselines = ranking.fit_baselines(SEQUENCES)
    # a and c twice (a the more recent), b once; g is not in the catalog. Then Markov after
    # g: h (S4), then the popular items.
    assert baselines.repeat(("c", "a", "c", "b", "a", "g")) == (
        "a", "c", "b", "h", "e", "f", "d")
    assert baselines.repeat(()) == baselines.popular


def test_better_baseline_is_the_best_of_four_on_mrr():
    metrics = {name: {"mrr@20": mrr, "recall@20": 0.5} for name, mrr in
               [("most_popular", 0.01), ("markov", 0.10), ("sknn", 0.12), ("repeat", 0.11)]}
    assert ranking.better_baseline(metrics) == "sknn"
    metrics["repeat"]["mrr@20"] = 0.12  # a tie: the first name wins
    assert ranking.better_baseline(metrics) == "repeat"
    computed = ranking.baseline_metrics(ranking.fit_baselines(SEQUENCES), [(HISTORY, "e")], 7)
    assert set(computed) == {"most_popular", "markov", "sknn", "repeat"}
    assert computed["sknn"]["mrr@20"] == 1.0 and computed["markov"]["mrr@20"] == 1 / 3


def test_bad_knn_settings_name_the_field():
    with pytest.raises(ValueError, match="k: expected >= 1 neighbours, got 0"):
        ranking.fit_baselines(SEQUENCES, k=0)
    with pytest.raises(ValueError, match="sample_size: expected >= 1 candidates, got 0"):
        ranking.fit_baselines(SEQUENCES, sample_size=0)
    with pytest.raises(ValueError, match=r"ends: expected one time per train sequence \(5\)"):
        ranking.fit_baselines(SEQUENCES, ends=[1.0])
    with pytest.raises(ValueError, match="data.sknn_sample: expected >= 1 candidates, got 0"):
        data.plan_examples([], DataConfig(sknn_sample=0))


def _metrics(ranked, target, catalog_size=0) -> dict[str, float]:
    acc = ranking.RankingAccumulator()
    acc.add(ranked, target)
    return acc.result(catalog_size)


def test_cut_offs_of_the_metrics():
    ranked = [f"i{r}" for r in range(1, 31)]
    at_15 = _metrics(ranked, "i15", catalog_size=60)
    assert at_15["recall@20"] == 1.0 and at_15["mrr@20"] == pytest.approx(1 / 15)
    assert at_15["ndcg@10"] == 0.0  # beyond 10
    assert at_15["coverage@20"] == pytest.approx(20 / 60)  # only the top 20 count
    at_25 = _metrics(ranked, "i25")
    assert at_25["recall@20"] == at_25["mrr@20"] == 0.0
    assert np.isnan(at_25["coverage@20"])  # no catalog size


def test_accumulators_merge_like_one_pass():
    whole = ranking.RankingAccumulator()
    parts = [ranking.RankingAccumulator(), ranking.RankingAccumulator()]
    for i, (history, target) in enumerate(EVAL):
        ranked = ranking.fit_baselines(TRAIN).markov(history)
        whole.add(ranked, target)
        parts[i % 2].add(ranked, target)
    assert parts[0].merge(parts[1]).result(3) == whole.result(3)
