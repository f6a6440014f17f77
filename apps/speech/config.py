"""Configuration of the speech app: frozen dataclasses and named presets."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from suite.config import AppConfig, TrainBase

FORMATS: tuple[str, ...] = ("fsdd", "speech-commands", "folders")
MODEL_KINDS: tuple[str, ...] = ("dscnn", "kwt", "crnn")
MODES: tuple[str, ...] = ("keywords", "transcribe")
DECODERS: tuple[str, ...] = ("greedy", "beam")
NORMALIZATIONS: tuple[str, ...] = ("batch", "utterance")
DIGITS: tuple[str, ...] = tuple("0123456789")
# Class (folder) names that mean a digit, for transcribe mode.
DIGIT_WORDS: dict[str, str] = {
    **{d: d for d in DIGITS},
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "oh": "0",
}
# The model family each mode uses unless --model says otherwise.
DEFAULT_KIND = {"keywords": "dscnn", "transcribe": "crnn"}


@dataclass(frozen=True)
class DataConfig:
    """Where clips come from, how they are split, and their rate and length."""

    # "fsdd": a flat folder of {label}_{speaker}_{index}.wav; "speech-commands":
    # <word>/<speaker>_nohash_<n>.wav with testing_list.txt / validation_list.txt and
    # _background_noise_/; "folders": any folder of class folders of WAV files.
    format: str = "fsdd"
    sample_rate_hz: int = 8000  # every clip is resampled to this rate
    clip_ms: int = 1000  # keywords: clips are padded (centred) or cropped to this length
    # Class names in output order; empty: from the data (FSDD: the digits; otherwise the
    # class folders, sorted). The run fills it from the ingested examples.
    classes: tuple[str, ...] = ()
    # speech-commands / folders: only these words are classes, every other word becomes
    # ``unknown_label`` (the usual keyword-spotting task); empty: every folder is a class.
    keywords: tuple[str, ...] = ()
    unknown_label: str = "_unknown_"
    # FSDD: recording indices held out as the eval split ("0-4" is FSDD's official test
    # split), or a speaker held out entirely (speaker-independent evaluation).
    eval_indices: str = "0-4"
    holdout_speaker: str = ""
    # FSDD: recording indices kept aside as the validation split (early stopping, model
    # choice); empty: validation_percent of the training indices, chosen by a hash.
    validation_indices: str = ""
    # Shares (%) of speakers (by the Speech Commands hash of the speaker id) in validation
    # and eval where the data has no list of its own; FSDD: share of training indices.
    validation_percent: float = 10.0
    eval_percent: float = 10.0
    # folders: the speaker id is the first group of this regular expression on the file
    # name (a file without a match is its own speaker).
    speaker_pattern: str = r"^(.+?)_(?:nohash_)?\d+\.wav$"
    # speech-commands: the folder is a sample of the data set its list files describe;
    # listed clips that are absent are counted, not errors.
    subset: bool = False
    # Bad input files: False = stop with an error naming the file; True = skip each with a
    # progress line and list it in the summary (``skipped``).
    skip_bad_files: bool = False
    min_peak_dbfs: float = -60.0  # clips whose peak stays below this are silent (rejected)


@dataclass(frozen=True)
class FeaturesConfig:
    """The log-mel front end inside the model (blocks.signal.log_mel)."""

    frame_ms: float = 25.0
    hop_ms: float = 10.0
    num_mel_bins: int = 40
    lower_hz: float = 20.0
    upper_hz: float = 0.0  # 0: 0.95 x the Nyquist frequency of data.sample_rate_hz
    num_mfcc: int = 0  # > 0: the first MFCCs instead of the log-mel bins
    # Standardisation of each mel bin: "batch" (statistics of the training data, learned
    # while training) or "utterance" (each clip's own mean and spread over time: removes
    # the level and colouring of a microphone or channel).
    normalize: str = "batch"
    # Floor of the mel powers before the log: well above 8-bit quantization noise, so the
    # full-integer TFLite model sees the features the float one does (and a microphone's
    # hiss below it does not matter).
    log_floor: float = 1e-2


@dataclass(frozen=True)
class ModelConfig:
    """Which network and how big."""

    # "dscnn" (depthwise-separable CNN), "kwt" (keyword Transformer on spectrogram patches,
    # keras-hub encoder blocks) or "crnn" (conv + bidirectional GRU); "" = the mode's
    # default (keywords: dscnn, transcribe: crnn).
    kind: str = ""
    # dscnn: width and depth, the first convolution's kernel and stride (frames, mel bins).
    filters: int = 64
    blocks: int = 4
    first_kernel: tuple[int, int] = (10, 4)
    first_stride: tuple[int, int] = (2, 2)
    # kwt: patches of patch_frames x all mel bins, encoder width, depth, heads, MLP width.
    patch_frames: int = 2
    kwt_dim: int = 64
    kwt_layers: int = 4
    kwt_heads: int = 4
    kwt_mlp_dim: int = 128
    # crnn: conv stages (filters each; each halves the mel bins, the first stages also the
    # frames, see crnn_time_pool), then bidirectional GRU layers (unrolled: TFLite).
    crnn_filters: tuple[int, ...] = (32, 64)
    crnn_time_pool: int = 2  # frames are pooled by this factor in each of the first stages
    rnn_units: int = 64
    rnn_layers: int = 1
    dropout: float = 0.2


@dataclass(frozen=True)
class TrainConfig(TrainBase):
    """Optimisation, how it spreads over devices (``TrainBase``), and training-time
    augmentation (never part of the exported model)."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    time_shift_ms: float = 100.0  # random shift of the clip in time, up to this much
    gain_db: tuple[float, float] = (-6.0, 6.0)  # random loudness change
    noise_probability: float = 0.3  # share of clips mixed with noise
    noise_snr_db: tuple[float, float] = (10.0, 40.0)  # SNR of the mixed noise
    # SpecAugment: bands of frames and of mel bins masked per clip.
    time_masks: int = 1
    time_mask_frames: int = 8
    freq_masks: int = 1
    freq_mask_bins: int = 4
    max_minutes: float | None = None  # stop after the epoch that exceeds this
    seed: int = 0


@dataclass(frozen=True)
class TranscribeConfig:
    """Spoken digit strings (transcribe mode): synthesis of the strings and decoding."""

    clip_ms: int = 6000  # recordings are padded or cropped to this length
    min_digits: int = 3
    max_digits: int = 8
    gap_ms: tuple[float, float] = (50.0, 400.0)  # silence between digits
    gain_db: tuple[float, float] = (-6.0, 6.0)  # loudness of each digit
    noise_probability: float = 0.5
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    train_strings: int = 1500  # strings synthesised from training clips per epoch
    validation_strings: int = 200  # built at ingestion from validation clips only
    eval_strings: int = 500  # built at ingestion from eval clips only
    decoder: str = "greedy"  # CTC decoding inside the serving graph: greedy or beam
    beam_width: int = 8
    seed: int = 0


@dataclass(frozen=True)
class EvalConfig:
    """What a model must reach to be blessed and pushed."""

    min_accuracy: float = 0.9  # keywords
    max_accuracy_drop: float = 0.01  # against the last blessed model
    max_cer: float = 0.05  # transcribe: character error rate ceiling
    max_cer_increase: float = 0.01  # transcribe: against the last blessed model


@dataclass(frozen=True)
class SpeechConfig(AppConfig):
    """The whole app configuration; JSON-safe so it travels through TFX custom_config."""

    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    transcribe: TranscribeConfig = field(default_factory=TranscribeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    mode: str = "keywords"  # "keywords" (one word per clip) or "transcribe" (digit strings)
    # Served model name (and TF Serving / edge folder). The default follows the mode, so a
    # transcriber is never pushed as a new version of the keyword model: "speech" and
    # "speech_transcribe".
    model_name: str = "speech"

    def __post_init__(self):
        defaults = {"keywords": "speech", "transcribe": "speech_transcribe"}
        if self.model_name in defaults.values() and self.mode in defaults:
            object.__setattr__(self, "model_name", defaults[self.mode])

    def check(self) -> SpeechConfig:
        """The config when its fields are consistent; raises naming the bad field."""
        problems = check_data(self.data)
        if self.mode not in MODES:
            problems.append(f"mode: expected one of {list(MODES)}, got {self.mode!r}")
        if self.model.kind not in ("", *MODEL_KINDS):
            problems.append(f"model.kind: expected one of {list(MODEL_KINDS)}, got "
                            f"{self.model.kind!r}")
        f = self.features
        if f.frame_ms <= 0 or f.hop_ms <= 0 or f.num_mel_bins < 1:
            problems.append(f"features: expected frame_ms, hop_ms > 0 and num_mel_bins >= 1, "
                            f"got {f.frame_ms}, {f.hop_ms}, {f.num_mel_bins}")
        if f.normalize not in NORMALIZATIONS:
            problems.append(f"features.normalize: expected one of {list(NORMALIZATIONS)}, got "
                            f"{f.normalize!r}")
        if f.upper_hz and f.upper_hz > self.data.sample_rate_hz / 2:
            problems.append(f"features.upper_hz: expected <= the Nyquist frequency "
                            f"({self.data.sample_rate_hz / 2:g} Hz), got {f.upper_hz}")
        if self.clip_ms < 2 * f.frame_ms:
            problems.append(f"clip length {self.clip_ms} ms: expected at least two frames "
                            f"({2 * f.frame_ms:g} ms)")
        for name in ("epochs", "batch_size"):
            if getattr(self.train, name) < 1:
                problems.append(f"train.{name}: expected >= 1, got {getattr(self.train, name)}")
        if not 0.0 <= self.train.noise_probability <= 1.0:
            problems.append(f"train.noise_probability: expected a share in [0, 1], got "
                            f"{self.train.noise_probability}")
        t = self.transcribe
        if not 1 <= t.min_digits <= t.max_digits:
            problems.append(f"transcribe.min_digits, max_digits: expected 1 <= min <= max, got "
                            f"{t.min_digits}, {t.max_digits}")
        if t.decoder not in DECODERS:
            problems.append(f"transcribe.decoder: expected one of {list(DECODERS)}, got "
                            f"{t.decoder!r}")
        if t.beam_width < 1:
            problems.append(f"transcribe.beam_width: expected >= 1, got {t.beam_width}")
        if self.mode == "transcribe" and (t.validation_strings < 1 or t.eval_strings < 1
                                          or t.train_strings < 1):
            problems.append("transcribe.train_strings, validation_strings, eval_strings: "
                            "expected >= 1")
        e = self.eval
        for name in ("min_accuracy", "max_cer"):
            if not 0.0 <= getattr(e, name) <= 1.0:
                problems.append(f"eval.{name}: expected a fraction in [0, 1], got "
                                f"{getattr(e, name)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def kind(self) -> str:
        """The model family: model.kind, or the mode's default."""
        return self.model.kind or DEFAULT_KIND[self.mode]

    @property
    def clip_ms(self) -> int:
        """Length of a clip the model takes, in milliseconds (the mode's)."""
        return self.transcribe.clip_ms if self.mode == "transcribe" else self.data.clip_ms

    @property
    def clip_samples(self) -> int:
        """Samples of a clip the model takes, at data.sample_rate_hz."""
        return self.data.sample_rate_hz * self.clip_ms // 1000

    @property
    def classes(self) -> tuple[str, ...]:
        """What the model's outputs mean: the keyword classes, or the digits (transcribe;
        the CTC blank is the output after them)."""
        return DIGITS if self.mode == "transcribe" else self.data.classes


def parse_indices(text: str, where: str) -> frozenset[int]:
    """Recording indices from "0-4", "0-4,10,12-13" (empty: none)."""
    indices: set[int] = set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not match:
            raise ValueError(f"{where}: expected indices like 0-4 or 0-4,10, got {text!r}")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if high < low:
            raise ValueError(f"{where}: range {part!r} runs backwards; expected LOW-HIGH")
        indices.update(range(low, high + 1))
    return frozenset(indices)


def check_data(d: DataConfig) -> list[str]:
    """Problems with the data fields, each naming its field (empty: consistent)."""
    problems = []
    if d.format not in FORMATS:
        problems.append(f"data.format: expected one of {list(FORMATS)}, got {d.format!r}")
    from apps.speech.wav import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ

    if not MIN_SAMPLE_RATE_HZ <= d.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
        problems.append(f"data.sample_rate_hz: expected {MIN_SAMPLE_RATE_HZ} .. "
                        f"{MAX_SAMPLE_RATE_HZ}, got {d.sample_rate_hz}")
    if d.clip_ms < 1:
        problems.append(f"data.clip_ms: expected >= 1, got {d.clip_ms}")
    if len(set(d.classes)) != len(d.classes):
        problems.append(f"data.classes: expected distinct names, got {list(d.classes)}")
    for name in ("eval_indices", "validation_indices"):
        try:
            parse_indices(getattr(d, name), f"data.{name}")
        except ValueError as e:
            problems.append(str(e))
    for name in ("validation_percent", "eval_percent"):
        if not 0.0 <= getattr(d, name) < 100.0:
            problems.append(f"data.{name}: expected a percentage in [0, 100), got "
                            f"{getattr(d, name)}")
    try:
        if re.compile(d.speaker_pattern).groups < 1:
            problems.append(f"data.speaker_pattern: expected a regular expression with a "
                            f"group (the speaker), got {d.speaker_pattern!r}")
    except re.error as e:
        problems.append(f"data.speaker_pattern: not a regular expression ({e})")
    return problems


def with_model_kind(config: SpeechConfig, kind: str) -> SpeechConfig:
    """``config`` with another model family (``--model``)."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, kind=kind))


PRESETS: dict[str, SpeechConfig] = {
    # Seconds on a laptop core: tests and the demo on generated clips (8 kHz, half-second
    # clips, small models).
    "tiny": SpeechConfig(
        data=DataConfig(sample_rate_hz=8000, clip_ms=500, eval_indices="0",
                        validation_percent=20.0, eval_percent=20.0),
        features=FeaturesConfig(frame_ms=32.0, hop_ms=16.0, num_mel_bins=20),
        model=ModelConfig(filters=16, blocks=2, first_kernel=(3, 3), kwt_dim=16,
                          kwt_layers=1, kwt_heads=2, kwt_mlp_dim=32, crnn_filters=(8, 16),
                          rnn_units=16, dropout=0.0),
        train=TrainConfig(epochs=40, batch_size=16, learning_rate=1e-2,
                          noise_probability=0.2, time_masks=1, time_mask_frames=3,
                          freq_masks=1, freq_mask_bins=2),
        transcribe=TranscribeConfig(clip_ms=1500, min_digits=2, max_digits=3,
                                    gap_ms=(30.0, 100.0), train_strings=48,
                                    validation_strings=6, eval_strings=12),
        eval=EvalConfig(min_accuracy=0.5, max_accuracy_drop=0.1, max_cer=1.0,
                        max_cer_increase=1.0),
    ),
    # The benchmark setting (FSDD: benchmarks/speech.py): 8 kHz (telephone band: what FSDD
    # is recorded at, and half the front end's work of 16 kHz on an edge device), a 64-wide
    # DS-CNN, 40 epochs with light noise and SpecAugment; about 10 minutes on 2 CPU cores.
    "default": SpeechConfig(data=DataConfig(sample_rate_hz=8000),
                            train=TrainConfig(epochs=40)),
    # 16 kHz (Speech Commands' rate) and bigger models.
    "full": SpeechConfig(
        data=DataConfig(sample_rate_hz=16000),
        model=ModelConfig(filters=128, blocks=5, kwt_dim=128, kwt_layers=8,
                          crnn_filters=(32, 64, 128), rnn_units=128, rnn_layers=2),
        train=TrainConfig(epochs=60),
    ),
}

SpeechConfig.PRESETS = PRESETS
