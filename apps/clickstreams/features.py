"""Feature and split names of the clickstreams examples (no TensorFlow)."""

HISTORY = "history"  # bytes list: the item ids before the next item, oldest first
NEXT_ITEM = "next_item"  # bytes: the item that came next (the label)
HISTORY_EVENTS = "history_event_types"  # bytes list, when the log has an event column
NEXT_EVENT = "next_event_type"
SESSION = "session_id"
TIMESTAMP = "timestamp"  # int64: unix seconds of the next event
ITEM_IDS = "item_ids"  # transformed: left-padded history ids (0 padding, 1..V, V + 1 unknown)
LABEL = "label"  # transformed: the next item's vocabulary index (V = unknown)
VOCABULARY = "items"  # TFT vocabulary (asset) name

SPLITS: tuple[str, ...] = ("train", "eval")
