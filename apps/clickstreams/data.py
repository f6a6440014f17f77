"""Raw event logs -> ordered sessions -> (history, next item) tf.Examples split by time.

Formats (``DataConfig.format``; column names, separator and time format can be overridden):
- ``session-tsv``: ``SessionId<TAB>ItemId<TAB>Time`` (unix seconds), header line optional
  (the GRU4Rec / YOOCHOOSE preprocessing);
- ``diginetica``: ``sessionId;userId;itemId;timeframe;eventdate`` with a header, the time
  being the event date plus ``timeframe`` milliseconds (CIKM Cup 2016 item views); header
  names match whatever their case and separators (``session_id;user_id;item_id;...``, as
  public session-recommendation code ships the file, reads too);
- ``movielens``: ``user item rating timestamp`` separated by tabs or spaces, no header
  (MovieLens ``u.data``): a user's chronological history is the sequence;
- ``csv``: a header naming the session (or user), item and time columns, any separator,
  times as unix seconds, milliseconds, ISO 8601 or a strptime pattern;
- ``orders``: one row per order line, as retailers export them (the Online Retail layout:
  ``InvoiceNo,StockCode,Description,Quantity,InvoiceDate_epoch_s,UnitPrice,CustomerID,...``):
  a sequence is a customer's purchase history (``session_key`` "customer") or one order
  (``"order"``); cancelled orders (an order id starting with C) and lines of quantity 0 or
  less are dropped, and lines without a customer are dropped or each order is its own
  sequence (``missing_customer``). What was dropped is counted in the summary.
An optional event-type column (view, cart, purchase...) is kept as a feature.

The whole file is read and validated before anything is written: a bad row raises a
``DataError`` naming the file, line and column. Events are grouped per session (or user) and
sorted by time, stable on ties (file order); sequences shorter than ``min_session_length``
are dropped. Every event after the first of a sequence is one example: the last
``max_history`` items before it (oldest first) and the item itself as the next item. The
split is by time, never random: examples whose next event is in the newest period are the
eval split. Eval examples asking for an item outside the train vocabulary are dropped, since
no recommender trained on the train split could rank it. The four baselines (``ranking.py``)
are fitted on the train split and scored on the eval split at ingestion, and stored in the
summary.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from apps.clickstreams import ranking
from apps.clickstreams.config import FORMATS, DataConfig
from apps.clickstreams.features import (
    HISTORY, HISTORY_EVENTS, NEXT_EVENT, NEXT_ITEM, SESSION, SPLITS, TIMESTAMP)
from suite import examples_io

# Bumped whenever the example encoding or the split rules change.
_FORMAT_VERSION = 1
_SHUFFLE_SEED = 0
_GUESS_SEPARATORS = ("\t", ";", ",", "|", " ")
_SEPARATOR_NAMES = {"\t": "tab", " ": "whitespace", ",": "comma", ";": "semicolon",
                    "|": "pipe"}


class DataError(ValueError):
    """Bad input data; the message starts with the offending path (and line, column)."""


@dataclass(frozen=True)
class Layout:
    """How to read one file: the format defaults with the config's overrides applied."""

    separator: str  # " " splits on any run of whitespace
    header: bool | None  # None: detected (a first line naming the columns read)
    columns: tuple[str, ...]  # column names by position when the file has no header
    session: str
    item: str
    time: str
    time_offset: str  # "" = none; milliseconds added to the time
    event: str  # "" = none
    time_format: str
    numeric_ids: bool
    order: str = ""  # the order (invoice) id column: "" = none
    quantity: str = ""  # the quantity column: "" = none
    missing_customer: str = "drop"  # the orders layout: see DataConfig


LAYOUTS: dict[str, Layout] = {
    "session-tsv": Layout("\t", None, ("SessionId", "ItemId", "Time"), "SessionId", "ItemId",
                          "Time", "", "", "unix", True),
    "diginetica": Layout(";", True, ("sessionId", "userId", "itemId", "timeframe",
                                     "eventdate"),
                         "sessionId", "itemId", "eventdate", "timeframe", "", "%Y-%m-%d", True),
    "movielens": Layout(" ", False, ("user", "item", "rating", "timestamp"), "user", "item",
                        "timestamp", "", "", "unix", True),
    "csv": Layout(",", True, (), "session_id", "item_id", "timestamp", "", "", "iso", False),
    "orders": Layout(",", True, (), "CustomerID", "StockCode", "InvoiceDate_epoch_s", "", "",
                     "unix", False, order="InvoiceNo", quantity="Quantity"),
}


def column_key(name: str) -> str:
    """A column name as header names are compared: lower case, no spaces, underscores or
    dashes (the CIKM Cup file's ``sessionId`` is the published code's ``session_id``)."""
    return re.sub(r"[\s_\-]", "", name).lower()


def layout(config: DataConfig) -> Layout:
    """The reading settings of ``config.format`` with the config's overrides applied."""
    if config.format not in FORMATS:
        raise ValueError(f"data.format: expected one of {list(FORMATS)}, got {config.format!r}")
    base = LAYOUTS[config.format]
    overrides = {
        "separator": config.separator, "header": config.header,
        "session": config.session_column, "item": config.item_column,
        "time": config.time_column, "time_offset": config.time_offset_column,
        "event": config.event_column, "time_format": config.time_format,
        "numeric_ids": config.numeric_ids,
    }
    lay = dataclasses.replace(base, **{k: v for k, v in overrides.items()
                                       if v is not None and v != ""})
    if lay.order:
        lay = dataclasses.replace(lay, missing_customer=config.missing_customer)
        if config.session_key == "order" and not config.session_column:
            lay = dataclasses.replace(lay, session=lay.order)
    return lay


def _check_config(config: DataConfig) -> None:
    if config.max_history < 1:
        raise ValueError(f"data.max_history: expected >= 1, got {config.max_history}")
    if config.min_session_length < 2:
        raise ValueError("data.min_session_length: expected >= 2 (a history and a next item), "
                         f"got {config.min_session_length}")
    if config.eval_days is None and not 0.0 < config.eval_fraction < 1.0:
        raise ValueError(f"data.eval_fraction: expected a value in (0, 1), "
                         f"got {config.eval_fraction}")
    if config.eval_days is not None and config.eval_days <= 0:
        raise ValueError(f"data.eval_days: expected > 0, got {config.eval_days}")
    if config.min_item_count < 1:
        raise ValueError(f"data.min_item_count: expected >= 1, got {config.min_item_count}")
    if config.sknn_k < 1:
        raise ValueError(f"data.sknn_k: expected >= 1 neighbours, got {config.sknn_k}")
    if config.sknn_sample < 1:
        raise ValueError(f"data.sknn_sample: expected >= 1 candidates, got {config.sknn_sample}")


# --------------------------------------------------------------------------------------
# Reading


def time_parser(time_format: str) -> tuple[Callable[[str], float], str]:
    """A function text -> unix seconds for a time format, and the format in words."""
    if time_format == "unix":
        return float, "unix seconds"
    if time_format == "unix_ms":
        return (lambda text: float(text) / 1000.0), "unix milliseconds"
    if time_format == "iso":
        def parse_iso(text: str) -> float:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return moment.timestamp()
        return parse_iso, "an ISO 8601 time such as 2024-03-01T10:15:00"
    if "%" in time_format:
        def parse_pattern(text: str) -> float:
            moment = datetime.strptime(text, time_format)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return moment.timestamp()
        return parse_pattern, f"a time like {time_format!r}"
    raise ValueError(f"data.time_format: expected 'unix', 'unix_ms', 'iso' or a strptime "
                     f"pattern containing '%', got {time_format!r}")


@dataclass
class EventLog:
    """Validated events of one file, in file order (columnar)."""

    path: str
    sessions: list[str]
    items: list[str]
    times: list[float]
    events: list[str] | None  # event types, when the layout has an event column
    dropped: dict[str, int] = field(default_factory=dict)  # rows left out, by reason

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def _split_line(line: str, separator: str) -> list[str]:
    if separator == " ":
        return line.split()
    if len(separator) > 1:  # e.g. MovieLens 1M's "::"
        return line.split(separator)
    return next(csv.reader([line], delimiter=separator))


def _guess_separator(line: str, expected: str) -> str:
    found = [s for s in _GUESS_SEPARATORS if s != expected and s in line.strip()]
    return (f"; the line contains {_SEPARATOR_NAMES.get(found[0], repr(found[0]))} characters"
            if found else "")


class _Reader:
    """Validates rows of one file against a layout, raising with file, line and column."""

    def __init__(self, path: str, lay: Layout):
        self.path, self.layout = path, lay
        self.parse_time, self.time_desc = time_parser(lay.time_format)
        self.positions: dict[str, int] = {}

    def fail(self, line: int, message: str, column: str | None = None) -> DataError:
        """The error for a line (and column) of this file."""
        where = f"line {line}" + (f", column {column!r}" if column else "")
        return DataError(f"{self.path}: {where}: {message}")

    def roles(self) -> dict[str, str]:
        """Role (session, item, time, time_offset, event) -> the column name read for it."""
        lay = self.layout
        roles = {"session": lay.session, "item": lay.item, "time": lay.time}
        if lay.time_offset:
            roles["time_offset"] = lay.time_offset
        if lay.event:
            roles["event"] = lay.event
        if lay.order:
            roles["order"] = lay.order
        if lay.quantity:
            roles["quantity"] = lay.quantity
        return roles

    def set_columns(self, names: Sequence[str], line: int, from_header: bool) -> None:
        """Finds each role's column among ``names`` (a header, or the format's columns);
        names match whatever their case and word separators (``sessionId``, ``session_id``
        and ``Session ID`` alike)."""
        roles = self.roles()
        keys = [column_key(n) for n in names]
        missing = [c for c in roles.values() if column_key(c) not in keys]
        if missing:
            sep = self.layout.separator
            if len(names) == 1 and len(roles) > 1:
                raise self.fail(line, f"found one column {names[0]!r}; expected columns "
                                f"{list(roles.values())} separated by "
                                f"{_SEPARATOR_NAMES.get(sep, repr(sep))}"
                                f"{_guess_separator(names[0], sep)}")
            if from_header:
                raise self.fail(line, f"missing column(s) {missing} in the header; found "
                                      f"{list(names)}")
            raise self.fail(line, f"column(s) {missing} need a header line naming them; "
                                  f"without one the columns are {list(names)}")
        self.positions = {role: keys.index(column_key(name)) for role, name in roles.items()}

    def _number(self, text: str, line: int, column: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise self.fail(line, f"expected a number, got {text.strip()!r}", column) from None

    def _id(self, text: str, line: int, column: str) -> str:
        value = text.strip()
        if not value:
            raise self.fail(line, "empty id", column)
        if not self.layout.numeric_ids:
            return value
        try:
            number = int(value)
        except ValueError:
            raise self.fail(line, f"expected a non-negative integer id, got {value!r}",
                            column) from None
        if number < 0:
            raise self.fail(line, f"expected a non-negative integer id, got {value!r}", column)
        return str(number)

    def _time(self, text: str, line: int, column: str, offset_text: str | None) -> float:
        value = text.strip()
        try:
            seconds = self.parse_time(value)
        except (ValueError, OverflowError):
            raise self.fail(line, f"expected {self.time_desc}, got {value!r}",
                            column) from None
        if offset_text is not None:
            offset_column = self.layout.time_offset
            try:
                seconds += float(offset_text.strip()) / 1000.0
            except ValueError:
                raise self.fail(line, f"expected a time offset in milliseconds, got "
                                f"{offset_text.strip()!r}", offset_column) from None
        if not math.isfinite(seconds):
            raise self.fail(line, f"expected a finite time, got {value!r}", column)
        return seconds

    def row(self, fields: Sequence[str], line: int, log: EventLog) -> None:
        """Validates one data row and appends its event to ``log``."""
        need = max(self.positions.values()) + 1
        lay = self.layout
        if len(fields) < need:
            if len(fields) == 1:
                sep = self.layout.separator
                raise self.fail(line, f"found one column; expected at least {need} "
                                f"separated by {_SEPARATOR_NAMES.get(sep, repr(sep))}"
                                f"{_guess_separator(fields[0], sep)}")
            roles = self.roles()
            missing = [roles[role] for role, at in sorted(self.positions.items(),
                                                          key=lambda item: item[1])
                       if at >= len(fields)]
            raise self.fail(line, f"expected at least {need} fields, got {len(fields)}: no "
                            f"value for column(s) {missing}")
        pos = self.positions
        session = fields[pos["session"]]
        if lay.order:
            order = fields[pos["order"]].strip()
            if order[:1] in ("C", "c"):
                return log.drop("cancelled orders")
            if lay.quantity and self._number(fields[pos["quantity"]], line, lay.quantity) <= 0:
                return log.drop("quantity 0 or less")
            if not session.strip():
                if lay.missing_customer == "drop":
                    return log.drop("no customer")
                session = f"order {order}"
        log.sessions.append(self._id(session, line, lay.session))
        log.items.append(self._id(fields[pos["item"]], line, lay.item))
        offset = fields[pos["time_offset"]] if "time_offset" in pos else None
        log.times.append(self._time(fields[pos["time"]], line, lay.time, offset))
        if log.events is not None:
            log.events.append(fields[pos["event"]].strip())


def read_events(path: str, config: DataConfig) -> EventLog:
    """Reads and validates every row of an event log in the configured format."""
    _check_config(config)
    lay = layout(config)
    reader = _Reader(path, lay)
    if not os.path.isfile(path):
        raise DataError(f"{path}: expected an event log file, got no such file")
    log = EventLog(path, [], [], [], [] if lay.event else None)
    first = True
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            for number, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                fields = _split_line(text.rstrip("\r\n"), lay.separator)
                if first:
                    first = False
                    names = [c.strip() for c in fields]
                    # Detected: a first line naming every column the layout reads.
                    keys = {column_key(n) for n in names}
                    is_header = lay.header if lay.header is not None else all(
                        column_key(c) in keys for c in reader.roles().values())
                    if is_header:
                        reader.set_columns(names, number, from_header=True)
                        continue
                    if not lay.columns:
                        raise DataError(f"{path}: format {config.format!r} needs a header "
                                        "line naming the columns")
                    reader.set_columns(lay.columns, number, from_header=False)
                reader.row(fields, number, log)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read the event log: {e}") from e
    if first:
        raise DataError(f"{path}: empty file; expected {config.format} event rows")
    if not log.items:
        raise DataError(f"{path}: no event rows after the header")
    return log


# --------------------------------------------------------------------------------------
# Sequences, examples and the time split


@dataclass(frozen=True)
class Session:
    """The events of one session (or user), sorted by time."""

    key: str
    items: tuple[str, ...]
    times: tuple[float, ...]
    events: tuple[str, ...] | None


def sessions(log: EventLog, min_length: int = 2) -> tuple[list[Session], int]:
    """Groups events per session in order of first appearance, sorts each by time (stable:
    ties keep file order); returns the sessions of at least ``min_length`` events and how
    many shorter ones were dropped."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(log.sessions):
        groups.setdefault(key, []).append(i)
    kept: list[Session] = []
    dropped = 0
    for key, rows in groups.items():
        if len(rows) < min_length:
            dropped += 1
            continue
        rows = sorted(rows, key=log.times.__getitem__)
        kept.append(Session(
            key, tuple(log.items[i] for i in rows), tuple(log.times[i] for i in rows),
            None if log.events is None else tuple(log.events[i] for i in rows)))
    return kept, dropped


@dataclass(frozen=True)
class Plan:
    """Which (session index, next-event position) pairs form each split."""

    sessions: list[Session]
    splits: dict[str, list[tuple[int, int]]]
    cutoff: float  # unix seconds: next events at or after it are eval
    vocabulary: dict[str, int]  # train next item -> count, for items kept in the vocabulary
    dropped_eval: int  # eval examples whose next item is not in the vocabulary

    def history(self, i: int, t: int, max_history: int) -> tuple[str, ...]:
        """The up to ``max_history`` items before position t of session i, oldest first."""
        return self.sessions[i].items[max(0, t - max_history):t]

    def next_item(self, i: int, t: int) -> str:
        """The item at position t of session i."""
        return self.sessions[i].items[t]


def plan_examples(seqs: list[Session], config: DataConfig, path: str = "data") -> Plan:
    """Assigns every next event to a split by time and checks both splits are usable."""
    _check_config(config)
    targets = [(i, t) for i, s in enumerate(seqs) for t in range(1, len(s.items))]
    if not targets:
        raise DataError(f"{path}: no session has {config.min_session_length} or more events; "
                        "expected sequences of at least a history and a next item")
    times = np.array([seqs[i].times[t] for i, t in targets])
    if config.eval_days is not None:
        cutoff = float(times.max()) - config.eval_days * 86400.0
    else:
        cutoff = float(np.sort(times)[int(len(times) * (1.0 - config.eval_fraction))])
    splits: dict[str, list[tuple[int, int]]] = {"train": [], "eval": []}
    for (i, t), moment in zip(targets, times.tolist(), strict=True):
        splits["eval" if moment >= cutoff else "train"].append((i, t))
    counts = Counter(seqs[i].items[t] for i, t in splits["train"])
    vocabulary = {item: n for item, n in counts.items() if n >= config.min_item_count}
    kept_eval = [(i, t) for i, t in splits["eval"] if seqs[i].items[t] in vocabulary]
    dropped = len(splits["eval"]) - len(kept_eval)
    splits["eval"] = kept_eval
    when = datetime.fromtimestamp(cutoff, timezone.utc).isoformat()
    if not splits["train"]:
        raise DataError(f"{path}: the train split is empty: every next event is at or after "
                        f"the eval cutoff {when}; use a shorter eval period")
    if not vocabulary:
        raise DataError(f"{path}: no item occurs {config.min_item_count} or more times as a "
                        "train next item; lower data.min_item_count")
    if not splits["eval"]:
        raise DataError(f"{path}: the eval split is empty: no next event at or after "
                        f"{when} asks for an item of the train vocabulary ({dropped} dropped); "
                        "use a longer eval period or lower data.min_item_count")
    return Plan(seqs, splits, cutoff, vocabulary, dropped)


def _bytes_feature(values: Sequence[str]):
    import tensorflow as tf  # noqa: PLC0415

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))


def serialize(plan: Plan, i: int, t: int, max_history: int) -> bytes:
    """One (history, next item) pair as a serialized tf.Example."""
    import tensorflow as tf  # noqa: PLC0415

    session = plan.sessions[i]
    start = max(0, t - max_history)
    feature = {
        HISTORY: _bytes_feature(session.items[start:t]),
        NEXT_ITEM: _bytes_feature([session.items[t]]),
        SESSION: _bytes_feature([session.key]),
        TIMESTAMP: tf.train.Feature(int64_list=tf.train.Int64List(
            value=[int(math.floor(session.times[t]))])),
    }
    if session.events is not None:
        feature[HISTORY_EVENTS] = _bytes_feature(session.events[start:t])
        feature[NEXT_EVENT] = _bytes_feature([session.events[t]])
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def history_examples(histories: Sequence[Sequence[str]]) -> list[bytes]:
    """Serving requests: serialized tf.Examples carrying only the item history."""
    import tensorflow as tf  # noqa: PLC0415

    return [tf.train.Example(features=tf.train.Features(feature={
        HISTORY: _bytes_feature(list(h))})).SerializeToString() for h in histories]


def split_pairs(plan: Plan, split: str, max_history: int) -> list[tuple[tuple[str, ...], str]]:
    """(history, next item) of every example of a split, in plan order."""
    return [(plan.history(i, t, max_history), plan.next_item(i, t))
            for i, t in plan.splits[split]]


def train_sequences(plan: Plan) -> tuple[list[tuple[str, ...]], list[float]]:
    """Every sequence's train part (its items up to its last train next event) and that
    event's time, in plan order: what the baselines are fitted on."""
    last: dict[int, int] = {}
    for i, t in plan.splits["train"]:
        last[i] = max(last.get(i, t), t)
    return ([plan.sessions[i].items[:t + 1] for i, t in last.items()],
            [plan.sessions[i].times[t] for i, t in last.items()])


# --------------------------------------------------------------------------------------
# Ingest


def ingest(path: str, config: DataConfig, out_root: str,
           progress: Callable[[str], None] | None = None) -> examples_io.IngestResult:
    """Validates the log, then writes train/ and eval/ TFRecords under out_root/<fingerprint>
    with the baselines' metrics (``baselines``, ``better_baseline``) and the vocabulary size
    (``catalog_size``) in ``summary.json``; a finished folder is reused untouched."""
    _check_config(config)
    if not os.path.isfile(path):
        raise DataError(f"{path}: expected an event log file, got no such file")

    def produce():
        log = read_events(path, config)
        seqs, dropped_short = sessions(log, config.min_session_length)
        plan = plan_examples(seqs, config, path)
        if progress:
            progress(f"read {len(log.items)} events in {len(seqs) + dropped_short} sequences; "
                     f"{dropped_short} shorter than {config.min_session_length} dropped"
                     + "".join(f"; {n} rows left out: {why}" for why, n in log.dropped.items()))
        n = config.max_history
        sequences, ends = train_sequences(plan)
        baselines = ranking.fit_baselines(sequences, plan.vocabulary, ends=ends,
                                          k=config.sknn_k, sample_size=config.sknn_sample)
        metrics = ranking.baseline_metrics(baselines, split_pairs(plan, "eval", n),
                                           len(plan.vocabulary))
        order = {split: list(items) for split, items in plan.splits.items()}
        # Session order would give batches of one session's prefixes; shuffle train once.
        perm = np.random.default_rng(_SHUFFLE_SEED).permutation(len(order["train"]))
        order["train"] = [order["train"][k] for k in perm]
        summary = {
            "format_version": _FORMAT_VERSION,
            "source_file": os.path.basename(path),
            "config": dataclasses.asdict(config),
            "events": len(log.items),
            "sequences": len(seqs),
            "dropped_short_sequences": dropped_short,
            "dropped_rows": log.dropped,
            "eval_cutoff": datetime.fromtimestamp(plan.cutoff, timezone.utc).isoformat(),
            "dropped_eval_unknown_items": plan.dropped_eval,
            "catalog_size": len(plan.vocabulary),
            "baselines": metrics,
            "better_baseline": ranking.better_baseline(metrics),
        }
        return examples_io.produced(
            {split: (serialize(plan, i, t, n) for i, t in order[split]) for split in SPLITS},
            summary)

    fingerprint = examples_io.content_fingerprint(
        {"format_version": _FORMAT_VERSION, "config": dataclasses.asdict(config)},
        [(os.path.basename(path), path)])
    return examples_io.ingest_once(out_root, fingerprint, produce, progress)


# --------------------------------------------------------------------------------------
# Synthetic logs

_EVENT_TYPES = ("view", "cart", "purchase")
_EVENT_P = (0.85, 0.11, 0.04)
_START = datetime(2024, 3, 1, tzinfo=timezone.utc).timestamp()


def _walks(rng: np.random.Generator, n_sessions: int, n_items: int, n_clusters: int,
           mean_length: float, overlap: int = 3) -> list[list[int]]:
    """Item index sequences: each session walks a Markov chain over item clusters.

    Every item belongs to ``overlap`` clusters, and each cluster orders its items; a session
    mostly steps forward in its current cluster's order and now and then moves on to the
    next cluster. The last item alone does not tell which cluster's order a session
    follows, but the history does, so a sequence model can beat a first-order (last item)
    Markov baseline.
    """
    size = max(2, overlap * n_items // n_clusters)
    members = np.concatenate([rng.permutation(n_items) for _ in range(overlap)])
    clusters = [list(dict.fromkeys(members[c * size:(c + 1) * size].tolist()))
                for c in range(n_clusters)]
    clusters = [c for c in clusters if len(c) >= 2]
    weights = 1.0 / np.arange(1, len(clusters) + 1) ** 0.3
    walks = []
    for _ in range(n_sessions):
        length = 1 + rng.geometric(1.0 / max(mean_length - 1.0, 1.0))
        c = int(rng.choice(len(clusters), p=weights / weights.sum()))
        pos = int(rng.integers(len(clusters[c])))
        walk = [clusters[c][pos]]
        for _ in range(length - 1):
            u = rng.random()
            if u < 0.06:  # the chain moves on to the next cluster
                c = (c + 1) % len(clusters)
                pos = int(rng.integers(len(clusters[c])))
            elif u < 0.10:  # an unrelated item
                walk.append(int(rng.integers(n_items)))
                continue
            else:
                pos = (pos + (1 if u < 0.85 else 2)) % len(clusters[c])
            walk.append(clusters[c][pos])
        walks.append(walk)
    return walks


def generate_synthetic(path: str, fmt: str = "session-tsv", *, n_sessions: int = 2000,
                       n_items: int = 200, n_clusters: int = 20, mean_length: float = 6.0,
                       days: float = 30.0, seed: int = 0) -> str:
    """Writes a synthetic event log in format ``fmt`` to ``path``; returns path.

    Sessions start uniformly over ``days`` and walk item clusters (see ``_walks``);
    deterministic for a seed. In the movielens format each session is one user's history;
    the csv format has an ``event_type`` column (view, cart, purchase).
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {list(FORMATS)}, got {fmt!r}")
    rng = np.random.default_rng(seed)
    walks = _walks(rng, n_sessions, n_items, n_clusters, mean_length)
    starts = np.sort(_START + rng.uniform(0.0, days * 86400.0, len(walks)))
    rows: list[str] = []
    if fmt == "session-tsv":
        rows.append("SessionId\tItemId\tTime")
    elif fmt == "diginetica":
        rows.append("sessionId;userId;itemId;timeframe;eventdate")
    elif fmt == "csv":
        rows.append("session_id,item_id,timestamp,event_type")
    elif fmt == "orders":
        rows.append("InvoiceNo,StockCode,Description,Quantity,InvoiceDate_epoch_s,UnitPrice,"
                    "CustomerID,Country")
    for s, (walk, start) in enumerate(zip(walks, starts.tolist(), strict=True), start=1):
        gaps = np.concatenate([[0.0], np.cumsum(rng.uniform(5.0, 120.0, len(walk) - 1))])
        for item, gap in zip(walk, gaps.tolist(), strict=True):
            moment = start + gap
            if fmt == "session-tsv":
                rows.append(f"{s}\t{1000 + item}\t{int(moment)}")
            elif fmt == "diginetica":
                # The date of the session's start and the milliseconds since that midnight.
                day = datetime.fromtimestamp(start, timezone.utc).date()
                midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
                frame = int(round((moment - midnight.timestamp()) * 1000.0))
                user = "NA" if s % 3 else str(s // 3)
                rows.append(f"{s};{user};{1000 + item};{frame};{day.isoformat()}")
            elif fmt == "movielens":
                rating = int(rng.integers(1, 6))
                rows.append(f"{s}\t{1000 + item}\t{rating}\t{int(moment)}")
            elif fmt == "orders":
                # One order per purchase of customer s; now and then a cancelled order, a
                # returned line (negative quantity) or a line without a customer.
                invoice, quantity, customer = f"{500000 + len(rows)}", 1 + int(rng.integers(6)), s
                u = rng.random()
                if u < 0.02:
                    invoice = "C" + invoice
                elif u < 0.04:
                    quantity = -quantity
                elif u < 0.06:
                    customer = ""
                rows.append(f"{invoice},{10000 + item},ITEM {item},{quantity},{int(moment)},"
                            f"1.25,{customer},United Kingdom")
            else:
                when = (datetime.fromtimestamp(0, timezone.utc) + timedelta(seconds=moment))
                event = str(rng.choice(_EVENT_TYPES, p=_EVENT_P))
                rows.append(f"s{s},sku-{item},{when.strftime('%Y-%m-%dT%H:%M:%S')},{event}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    return path

