"""Configuration of the clickstreams app: frozen dataclasses and named presets."""

from __future__ import annotations

from dataclasses import dataclass, field

from suite.config import AppConfig, TrainBase

FORMATS: tuple[str, ...] = ("session-tsv", "diginetica", "movielens", "csv", "orders")
SESSION_KEYS: tuple[str, ...] = ("customer", "order")  # the orders layout's sequences
MISSING_CUSTOMER: tuple[str, ...] = ("drop", "order")
MODEL_KINDS: tuple[str, ...] = ("sasrec", "gru")
LOSSES: tuple[str, ...] = ("full", "sampled")


@dataclass(frozen=True)
class DataConfig:
    """How a raw event log becomes (history, next item) examples and a time split.

    Empty strings and None mean "the format's own default" (see ``data.LAYOUTS``).
    """

    format: str = "session-tsv"  # one of FORMATS
    separator: str | None = None  # field separator; " " means any run of whitespace
    header: bool | None = None  # the first line names the columns (None: detected)
    # Column names: the sequence key (session or user), the item, the time, an optional
    # millisecond offset added to the time (diginetica's timeframe) and an optional event
    # type (view, cart, purchase...), kept as a feature.
    session_column: str = ""
    item_column: str = ""
    time_column: str = ""
    time_offset_column: str = ""
    event_column: str = ""
    # "unix" (seconds), "unix_ms", "iso" (ISO 8601, UTC when no zone) or a strptime pattern.
    time_format: str = ""
    numeric_ids: bool | None = None  # session and item ids must be non-negative integers
    # The orders layout (one row per order line): a sequence is a customer's purchase history
    # ("customer") or one order's lines ("order"); lines without a customer are dropped
    # ("drop") or each order is its own sequence ("order").
    session_key: str = "customer"
    missing_customer: str = "drop"
    max_history: int = 20  # the last N items of a history written per example
    min_session_length: int = 2  # shorter sessions (or user histories) are dropped
    # The newest events are the eval split: those in the last eval_days before the newest
    # event, or (eval_days unset) the newest eval_fraction of next-item events.
    eval_days: float | None = None
    eval_fraction: float = 0.2
    # Items seen fewer times than this as a train next item are not in the item vocabulary;
    # eval examples asking for them are dropped (no model or baseline could rank them).
    min_item_count: int = 1
    # The session-kNN baseline (V-SKNN): neighbours kept, out of the most recent train
    # sequences sharing an item with the history.
    sknn_k: int = 100
    sknn_sample: int = 500


@dataclass(frozen=True)
class ModelConfig:
    """Which sequence model and how big."""

    kind: str = "sasrec"  # "sasrec" (causal self-attention) or "gru"
    embedding_dim: int = 64
    num_blocks: int = 2  # Transformer blocks (sasrec)
    num_heads: int = 2
    intermediate_dim: int = 128  # feed-forward width of a Transformer block
    gru_units: int = 64
    dropout: float = 0.2
    # A direct path from each item to the scores of the item after it (FPMC / STAMP style):
    # an item's own transition vector, a table apart from the shared item embedding, is
    # added to its position's state, so "what follows this item" need not be symmetric.
    # Measured on Online Retail's validation period (SASRec, 2 epochs): MRR@20 0.1484 ->
    # 0.1676, Recall@20 0.3813 -> 0.3795.
    transition: bool = True


@dataclass(frozen=True)
class TrainConfig(TrainBase):
    """Optimisation: epochs, batch size, learning rate and seed, and the loss."""

    loss: str = "full"  # "full" softmax cross-entropy or "sampled" softmax
    num_sampled: int = 256  # negatives per batch for the sampled softmax
    # Examples held for shuffling: with the batch and the model, what bounds the training's
    # memory (the examples are streamed from their files at each epoch, whatever the log's
    # length). About 80 bytes each at max_history 20.
    shuffle_buffer: int = 200_000


@dataclass(frozen=True)
class EvalConfig:
    """What a model must reach to be blessed and pushed.

    The run command fills ``baseline_mrr20`` and ``catalog_size`` from the ingestion summary
    (the best baseline's MRR@20 on the eval split), so the TFMA config stays a pure
    function of this config.
    """

    baseline_mrr20: float = 0.0
    min_lift: float = 1.0  # MRR@20 must reach baseline_mrr20 * min_lift
    max_mrr_drop: float = 0.01  # largest MRR@20 drop tolerated against the last blessed model
    catalog_size: int = 0  # items in the vocabulary (the denominator of coverage@20)


@dataclass(frozen=True)
class ServingConfig:
    """What the served model returns."""

    top_k: int = 20  # items per request (the metrics need at least 20)


@dataclass(frozen=True)
class ClickstreamConfig(AppConfig):
    """The whole app configuration; JSON-safe so it travels through TFX custom_config."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    model_name: str = "clickstreams"

    CHOICES = {"data.format": FORMATS, "data.session_key": SESSION_KEYS,
               "data.missing_customer": MISSING_CUSTOMER, "model.kind": MODEL_KINDS,
               "train.loss": LOSSES}
    # The metrics rank 20 items.
    AT_LEAST = {**AppConfig.AT_LEAST, "serving.top_k": 20, "train.shuffle_buffer": 1}


PRESETS: dict[str, ClickstreamConfig] = {
    # Seconds of training on generated logs: tests and the demo.
    "tiny": ClickstreamConfig(
        data=DataConfig(max_history=8),
        model=ModelConfig(embedding_dim=32, num_blocks=1, num_heads=2, intermediate_dim=64,
                          gru_units=32, dropout=0.0),
        train=TrainConfig(epochs=12, batch_size=64, learning_rate=1e-2),
        eval=EvalConfig(max_mrr_drop=0.05),
    ),
    # The benchmark setting.
    "default": ClickstreamConfig(train=TrainConfig(epochs=15, batch_size=128)),
    "full": ClickstreamConfig(
        data=DataConfig(max_history=50, min_item_count=5),
        model=ModelConfig(embedding_dim=128, intermediate_dim=256, gru_units=128),
        train=TrainConfig(epochs=30, batch_size=256, loss="sampled", num_sampled=1024),
    ),
}


ClickstreamConfig.PRESETS = PRESETS
