"""Readers, ordering, the time split and ingestion of the clickstreams app, on generated logs
in every format and on hand-written bad files."""

from __future__ import annotations

import dataclasses
import glob
import os

import pytest

from apps.clickstreams import data
from apps.clickstreams.config import DataConfig
from apps.clickstreams.data import DataError
from apps.clickstreams.features import SPLITS

N_SESSIONS = 150


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("logs")
    return {fmt: data.generate_synthetic(str(root / f"events.{fmt}"), fmt,
                                         n_sessions=N_SESSIONS, n_items=30, n_clusters=3)
            for fmt in ("session-tsv", "diginetica", "movielens", "csv")}


def _write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _item_sequences(path: str, config: DataConfig) -> list[tuple[str, ...]]:
    seqs, _ = data.sessions(data.read_events(path, config))
    return [s.items for s in seqs]


# ------------------------------------------------------------------ formats


def test_every_format_reads_the_same_generated_sessions(logs):
    reference = _item_sequences(logs["session-tsv"], DataConfig())
    assert len(reference) == N_SESSIONS
    for fmt in ("diginetica", "movielens"):
        assert _item_sequences(logs[fmt], DataConfig(format=fmt)) == reference, fmt
    as_csv = _item_sequences(logs["csv"], DataConfig(format="csv"))
    assert [tuple(str(1000 + int(i[4:])) for i in s) for s in as_csv] == reference


def test_csv_event_types_and_custom_columns(tmp_path, logs):
    config = DataConfig(format="csv", event_column="event_type")
    log = data.read_events(logs["csv"], config)
    assert set(log.events) <= {"view", "cart", "purchase"} and "view" in log.events
    renamed = _write(tmp_path / "renamed.psv",
                     "when|who|what\n2024-01-01 10:00|u1|x\n2024-01-01 09:00|u1|y\n")
    config = DataConfig(format="csv", separator="|", session_column="who", item_column="what",
                        time_column="when", time_format="%Y-%m-%d %H:%M")
    seqs, _ = data.sessions(data.read_events(renamed, config))
    assert [s.items for s in seqs] == [("y", "x")]


def test_sorting_is_by_time_and_stable_on_ties(tmp_path):
    path = _write(tmp_path / "ties.tsv",
                  "1\t10\t100\n1\t11\t50\n2\t20\t7\n1\t12\t100\n1\t13\t100\n3\t30\t1\n")
    seqs, dropped = data.sessions(data.read_events(path, DataConfig()))
    assert [(s.key, s.items) for s in seqs] == [("1", ("11", "10", "12", "13"))]
    assert dropped == 2  # sessions 2 and 3 have one event


def test_header_is_detected_or_absent_and_whitespace_is_one_separator(tmp_path):
    with_header = _write(tmp_path / "h.tsv", "SessionId\tItemId\tTime\n1\t5\t1\n1\t6\t2\n")
    without = _write(tmp_path / "n.tsv", "1\t5\t1\n1\t6\t2\n")
    spaced = _write(tmp_path / "u.data", "7   5  3 1\n7\t6 4\t2\n")
    assert _item_sequences(with_header, DataConfig()) == [("5", "6")]
    assert _item_sequences(without, DataConfig()) == [("5", "6")]
    assert _item_sequences(spaced, DataConfig(format="movielens")) == [("5", "6")]
    events = _write(tmp_path / "e.tsv", "Time\tSessionId\tItemId\tEvent\n2\t1\t6\tbuy\n"
                    "1\t1\t5\tview\n")
    log = data.read_events(events, DataConfig(event_column="Event"))
    assert (log.items, log.events) == (["6", "5"], ["buy", "view"])


def test_diginetica_time_is_the_date_plus_the_timeframe(tmp_path):
    path = _write(tmp_path / "views.csv", "sessionId;userId;itemId;timeframe;eventdate\n"
                  "1;NA;81766;526309;2016-05-09\n1;NA;31331;1031018;2016-05-09\n"
                  "1;NA;32118;243569;2016-05-09\n")
    log = data.read_events(path, DataConfig(format="diginetica"))
    assert log.times[0] == pytest.approx(1462752000 + 526.309)
    assert _item_sequences(path, DataConfig(format="diginetica")) == [
        ("32118", "81766", "31331")]


@pytest.mark.parametrize("header", ["session_id;user_id;item_id;timeframe;eventdate",
                                    "SESSION ID;User-Id;ItemId;Timeframe;EventDate"])
def test_diginetica_header_names_match_whatever_their_case_and_separators(tmp_path, header):
    camel = _write(tmp_path / "camel.csv", "sessionId;userId;itemId;timeframe;eventdate\n"
                   "1;NA;81766;526309;2016-05-09\n1;NA;31331;1031018;2016-05-09\n")
    other = _write(tmp_path / "other.csv", header + "\n"
                   "1;NA;81766;526309;2016-05-09\n1;NA;31331;1031018;2016-05-09\n")
    config = DataConfig(format="diginetica")
    expected = data.read_events(camel, config)
    got = data.read_events(other, config)
    assert (got.sessions, got.items, got.times) == (expected.sessions, expected.items,
                                                    expected.times)


ORDERS = ("InvoiceNo,StockCode,Description,Quantity,InvoiceDate_epoch_s,UnitPrice,CustomerID,"
          "Country\n"
          "536365,85123A,WHITE HEART,6.0,1291191960,2.55,17850,United Kingdom\n"
          "536365,71053,WHITE LANTERN,6.0,1291191960,3.39,17850,United Kingdom\n"
          "C536379,D,Discount,-1.0,1291194000,27.5,14527,United Kingdom\n"
          "536380,22961,JAM JAR,-2.0,1291194100,1.45,17850,United Kingdom\n"
          "536414,22139,RETROSPOT SET,56.0,1291195000,0.0,,United Kingdom\n"
          "536414,22140,RETROSPOT BOX,3.0,1291195000,1.0,,United Kingdom\n"
          "536520,21123,DOORMAT,2.0,1291280000,4.95,17850,United Kingdom\n")


def test_orders_layout_reads_customer_histories_and_drops_what_is_not_a_purchase(tmp_path):
    path = _write(tmp_path / "online_retail.csv", ORDERS)
    log = data.read_events(path, DataConfig(format="orders"))
    assert log.sessions == ["17850", "17850", "17850"]
    assert log.items == ["85123A", "71053", "21123"] and log.times[-1] == 1291280000
    assert log.dropped == {"cancelled orders": 1, "quantity 0 or less": 1, "no customer": 2}
    by_order = data.read_events(path, DataConfig(format="orders", session_key="order",
                                                 missing_customer="order"))
    assert by_order.sessions == ["536365", "536365", "536414", "536414", "536520"]
    kept = data.read_events(path, DataConfig(format="orders", missing_customer="order"))
    assert kept.sessions == ["17850", "17850", "order 536414", "order 536414", "17850"]
    assert kept.dropped == {"cancelled orders": 1, "quantity 0 or less": 1}


def test_orders_layout_reads_its_generated_log_end_to_end(tmp_path):
    path = data.generate_synthetic(str(tmp_path / "orders.csv"), "orders", n_sessions=200)
    result = data.ingest(path, DataConfig(format="orders", min_item_count=1),
                         str(tmp_path / "out"))
    dropped = result.summary["dropped_rows"]
    assert set(dropped) == {"cancelled orders", "quantity 0 or less", "no customer"}
    assert sum(result.counts.values()) > 0


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("name, text, config, expected", [
    ("missing.csv", "session_id,item_id\ns1,a\n", DataConfig(format="csv"),
     r"line 1: missing column\(s\) \['timestamp'\] in the header"),
    ("time.tsv", "1\t5\t100\n1\t6\tyesterday\n", DataConfig(),
     r"line 2, column 'Time': expected unix seconds, got 'yesterday'"),
    ("iso.csv", "session_id,item_id,timestamp\ns,a,2024-13-45T00:00\n", DataConfig(format="csv"),
     r"line 2, column 'timestamp': expected an ISO 8601 time"),
    ("empty.tsv", "", DataConfig(), r"empty file"),
    ("header.tsv", "SessionId\tItemId\tTime\n\n", DataConfig(), r"no event rows after the header"),
    ("commas.tsv", "1,5,100\n1,6,101\n", DataConfig(),
     r"line 1: found one column; expected at least 3 separated by tab; the line contains comma"),
    ("semi.csv", "session_id;item_id;timestamp\n", DataConfig(format="csv"),
     r"line 1: found one column .* separated by comma; the line contains semicolon"),
    ("negative.data", "1 5 3 100\n-4 6 3 101\n", DataConfig(format="movielens"),
     r"line 2, column 'user': expected a non-negative integer id, got '-4'"),
    ("text.csv", "sessionId;userId;itemId;timeframe;eventdate\n1;NA;abc;5;2016-05-09\n",
     DataConfig(format="diginetica"),
     r"line 2, column 'itemId': expected a non-negative integer id, got 'abc'"),
    ("frame.csv", "sessionId;userId;itemId;timeframe;eventdate\n1;NA;3;soon;2016-05-09\n",
     DataConfig(format="diginetica"),
     r"line 2, column 'timeframe': expected a time offset in milliseconds, got 'soon'"),
    ("short.tsv", "1\t5\t100\n1\t6\n", DataConfig(), r"line 2: expected at least 3 fields, got 2"),
    ("blank.tsv", "1\t\t100\n", DataConfig(), r"line 1, column 'ItemId': empty id"),
])
def test_bad_files_name_the_file_line_and_column(tmp_path, name, text, config, expected):
    path = _write(tmp_path / name, text)
    with pytest.raises(DataError, match=expected) as info:
        data.read_events(path, config)
    assert str(info.value).startswith(f"{path}: ")


def test_missing_file_and_unusable_splits(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        data.read_events(str(tmp_path / "nope.tsv"), DataConfig())
    singles = _write(tmp_path / "singles.tsv", "1\t5\t1\n2\t6\t2\n")
    with pytest.raises(DataError, match="no session has 2 or more events"):
        data.ingest(singles, DataConfig(), str(tmp_path / "out"))
    # The only eval next item (7) never is a train next item.
    unseen = _write(tmp_path / "unseen.tsv", "1\t5\t1\n1\t6\t2\n2\t5\t3\n2\t7\t4\n")
    with pytest.raises(DataError, match=r"the eval split is empty.*\(1 dropped\)"):
        data.ingest(unseen, DataConfig(eval_fraction=0.4), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


# ------------------------------------------------------------------ examples and ingest


def test_split_is_by_time_and_histories_keep_the_last_items(logs):
    config = DataConfig(max_history=3, eval_fraction=0.25)
    seqs, _ = data.sessions(data.read_events(logs["session-tsv"], config))
    plan = data.plan_examples(seqs, config)
    moment = {split: [seqs[i].times[t] for i, t in pairs] for split, pairs in plan.splits.items()}
    assert max(moment["train"]) < plan.cutoff <= min(moment["eval"])
    n_targets = sum(len(s.items) - 1 for s in seqs)
    assert len(plan.splits["train"]) + len(plan.splits["eval"]) + plan.dropped_eval == n_targets
    for i, t in plan.splits["train"][:50]:
        assert plan.history(i, t, 3) == seqs[i].items[max(0, t - 3):t]
        assert 1 <= len(plan.history(i, t, 3)) <= 3
    assert {plan.next_item(i, t) for i, t in plan.splits["eval"]} <= set(plan.vocabulary)


def test_ingest_writes_examples_once_with_the_baselines(logs, tmp_path):
    import tensorflow as tf

    config = DataConfig(format="csv", event_column="event_type", max_history=4)
    result = data.ingest(logs["csv"], config, str(tmp_path / "examples"))
    files = {s: glob.glob(os.path.join(result.examples_dir, s, "*")) for s in SPLITS}
    records = {s: [tf.train.Example.FromString(r) for r in
                   tf.data.TFRecordDataset(f).as_numpy_iterator()] for s, f in files.items()}
    assert {s: len(r) for s, r in records.items()} == result.counts
    example = records["eval"][0].features.feature
    assert set(example) == {"history", "next_item", "session_id", "timestamp",
                            "history_event_types", "next_event_type"}
    assert 1 <= len(example["history"].bytes_list.value) <= 4
    assert len(example["history_event_types"].bytes_list.value) == len(
        example["history"].bytes_list.value)
    baselines = result.summary["baselines"]
    assert set(baselines) == {"most_popular", "markov", "sknn", "repeat"}
    assert baselines["markov"]["mrr@20"] > baselines["most_popular"]["mrr@20"]
    assert result.summary["better_baseline"] == "markov" and result.summary["catalog_size"] > 0

    stamp = os.path.getmtime(files["train"][0])
    again = data.ingest(logs["csv"], config, str(tmp_path / "examples"))
    assert again.examples_dir == result.examples_dir and again.counts == result.counts
    assert os.path.getmtime(files["train"][0]) == stamp  # reused, not rewritten
    other = data.ingest(logs["csv"], dataclasses.replace(config, max_history=5),
                        str(tmp_path / "examples"))
    assert other.fingerprint != result.fingerprint
    assert not [p for p in os.listdir(tmp_path / "examples") if p.startswith(".tmp")]
