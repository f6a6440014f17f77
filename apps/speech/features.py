"""Feature and split names of the speech examples (no TensorFlow)."""

AUDIO = "audio"  # bytes: a 16-bit PCM mono WAV file at the preset's sample rate
LABEL = "label"  # int64: index in config.data.classes (keywords mode)
LABEL_NAME = "label_name"  # bytes: the class name (keywords mode)
TRANSCRIPT = "transcript"  # bytes: the spoken digits, e.g. b"4071" (transcribe mode)
SPEAKER = "speaker"  # bytes: speaker id, a slicing feature
SOURCE_FILE = "source_file"  # bytes: the clip's path in the data set ("a+b+c" for strings)
N_DIGITS = "n_digits"  # int64: digits in the transcript (transcribe mode), a slicing feature

AUDIO_XF = "audio_xf"  # transformed: float PCM [clip samples] at the preset's rate, mono
TRANSCRIPT_IDS = "transcript_ids"  # transformed: digit ids [max_digits], -1 padded

SPLITS: tuple[str, ...] = ("train", "validation", "eval", "noise")
# The "noise" split holds the data set's background-noise recordings (Speech Commands'
# _background_noise_/): training mixes them into clips; it is empty when there are none.
NOISE_SPLIT = "noise"
