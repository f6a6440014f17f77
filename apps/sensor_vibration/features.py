"""Feature and split names of the sensor-vibration examples (no TensorFlow)."""

SIGNAL = "signal"  # float: one window, time-major, channels interleaved
LABEL = "label"  # int64: index in config.data.classes
LABEL_NAME = "label_name"
LOAD = "load"  # int64: motor load (HP), a slicing feature
RPM = "rpm"
SOURCE_FILE = "source_file"
WINDOW_START = "window_start"
SIGNAL_XF = "signal_xf"  # transformed: per-channel z-scored [window, channels]

SPLITS: tuple[str, ...] = ("train", "eval")
