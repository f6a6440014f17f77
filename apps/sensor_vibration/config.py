"""Configuration of the sensor-vibration app: frozen dataclasses and named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from suite.config import AppConfig, DriftConfig, TrainBase

FORMATS: tuple[str, ...] = ("mat", "csv")
MODEL_KINDS: tuple[str, ...] = ("spectral", "wdcnn", "lstm", "gru")

# The ten classes of the CWRU 12 kHz drive-end benchmark: normal plus ball, inner-race and
# outer-race faults at three diameters (mils).
CWRU_CLASSES: tuple[str, ...] = (
    "Normal",
    "B007", "B014", "B021",
    "IR007", "IR014", "IR021",
    "OR007", "OR014", "OR021",
)


@dataclass(frozen=True)
class DataConfig:
    """How raw recordings become windows and splits."""

    format: str = "mat"  # "mat" (CWRU-style MATLAB files) or "csv" (one column per channel)
    manifest: str = "manifest.csv"  # file -> label, load, rpm; relative to the data folder
    label_column: str = "class10"
    channels: tuple[str, ...] = ("DE",)  # accelerometer positions: DE (drive end), FE, BA
    classes: tuple[str, ...] = CWRU_CLASSES
    sample_rate_hz: int = 12000
    window: int = 2048
    stride: int = 1024
    # Each recording is cut into this many contiguous time blocks; the last block of every
    # recording is the eval split, and windows never cross a block boundary (no leakage).
    split_blocks: int = 5
    holdout_load: int | None = None  # when set, this load is the whole eval split
    max_windows_per_file: int | None = None
    # Every class must have train and eval windows, or ingestion stops; True runs anyway
    # (e.g. CWRU with a held-out load: its Normal recordings are at load 0 only); classes
    # without eval windows are then not gated.
    allow_missing_classes: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """Which network and how big."""

    # "wdcnn" (1D CNN, wide first kernel), "lstm", "gru" or "spectral" (Welch log power
    # spectrum + softmax read-out; first_kernel/first_stride are its frame and hop)
    kind: str = "wdcnn"
    first_kernel: int = 64
    first_stride: int = 16
    filters: tuple[int, ...] = (16, 32, 64, 64, 64)
    rnn_units: int = 64
    dense_units: int = 100
    dropout: float = 0.2


@dataclass(frozen=True)
class TrainConfig(TrainBase):
    """Optimisation (epochs, batch size, learning rate, seed, the schedule) and training-time
    augmentation."""

    # "constant", or "cosine": decays the rate to 0 over the epochs (steadier end points)
    lr_schedule: str = "constant"
    # Additive white noise at a random SNR in this range (dB) on a fraction of training
    # windows, so the model keeps working on noisy machines.
    noise_snr_db: tuple[float, float] = (-4.0, 20.0)
    noise_probability: float = 0.5
    max_shift: int = 0  # random circular time shift (samples)


@dataclass(frozen=True)
class EvalConfig:
    """What a model must reach to be blessed and pushed."""

    min_accuracy: float = 0.9
    # Largest accuracy drop tolerated against the last blessed model.
    max_accuracy_drop: float = 0.01
    # Recall floor of every class with eval windows (so an overall figure cannot hide a
    # collapsed class).
    min_class_recall: float = 0.5


@dataclass(frozen=True)
class VibrationConfig(AppConfig):
    """The whole app configuration; JSON-safe so it travels through TFX custom_config."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # Raw windows: heavy-tailed values, thousands per request (see DriftConfig).
    drift: DriftConfig = field(default_factory=lambda: DriftConfig(histogram_buckets=100))
    model_name: str = "sensor_vibration"

    CHOICES = {"model.kind": MODEL_KINDS, "train.lr_schedule": ("constant", "cosine")}

    def check(self) -> VibrationConfig:
        """The config when its fields are consistent; raises naming the bad field."""
        check_data(self.data)
        if not 0.0 <= self.eval.min_accuracy <= 1.0:
            raise ValueError(f"eval.min_accuracy: expected a fraction in [0, 1], got "
                             f"{self.eval.min_accuracy}")
        return super().check()



def check_data(config: DataConfig) -> DataConfig:
    """``config`` when its fields are consistent; ValueError naming each bad field."""
    problems = []
    if config.format not in FORMATS:
        problems.append(f"data.format must be 'mat' or 'csv', got {config.format!r}")
    if not config.channels:
        problems.append("data.channels must not be empty")
    if config.window < 1 or config.stride < 1:
        problems.append(f"data.window and data.stride must be >= 1, got {config.window}, "
                        f"{config.stride}")
    if config.split_blocks < 1:
        problems.append(f"data.split_blocks must be >= 1, got {config.split_blocks}")
    if config.max_windows_per_file is not None and config.max_windows_per_file < 1:
        problems.append(f"data.max_windows_per_file must be >= 1 or None, got "
                        f"{config.max_windows_per_file}")
    if problems:
        raise ValueError("DataConfig: " + "; ".join(problems))
    return config


PRESETS: dict[str, VibrationConfig] = {
    # Seconds on a laptop core: for tests and the demo on generated data.
    "tiny": VibrationConfig(
        data=DataConfig(window=256, stride=128, split_blocks=4),
        model=ModelConfig(first_kernel=16, first_stride=4, filters=(8, 16, 16),
                          rnn_units=16, dense_units=32),
        train=TrainConfig(epochs=10, batch_size=32, learning_rate=3e-3, noise_probability=0.0),
        eval=EvalConfig(min_accuracy=0.7, max_accuracy_drop=0.05, min_class_recall=0.3),
    ),
    # The benchmark configuration on the CWRU 12 kHz drive-end data: the spectral model
    # (512-sample frames, 23 Hz bins, linear read-out), trained to convergence with noise
    # augmentation; it keeps its accuracy on unseen loads and at 0 dB SNR, where the WDCNN
    # does not (benchmarks/sensor_vibration.py).
    "default": VibrationConfig(
        model=ModelConfig(kind="spectral", first_kernel=512, first_stride=256, dense_units=0),
        train=TrainConfig(epochs=60, batch_size=256, learning_rate=3e-3, lr_schedule="cosine"),
    ),
    "full": VibrationConfig(
        data=DataConfig(stride=512),
        model=ModelConfig(kind="spectral", first_kernel=512, first_stride=256, dense_units=0),
        train=TrainConfig(epochs=60, batch_size=256, learning_rate=3e-3, lr_schedule="cosine"),
    ),
}

VibrationConfig.PRESETS = PRESETS


def with_model_kind(config: VibrationConfig, kind: str) -> VibrationConfig:
    """Returns the config with another model family. first_kernel / first_stride mean a
    frame and hop for the spectral model but a convolution for the others, so switching
    between the two families takes the new family's defaults for them (and dense_units)."""
    model = config.model
    if (kind == "spectral") != (model.kind == "spectral"):
        if kind == "spectral":
            frame = min(512, config.data.window)
            model = dataclasses.replace(model, first_kernel=frame, first_stride=frame // 2,
                                        dense_units=0)
        else:
            base = ModelConfig()
            model = dataclasses.replace(model, first_kernel=base.first_kernel,
                                        first_stride=base.first_stride,
                                        dense_units=base.dense_units)
    return dataclasses.replace(config, model=dataclasses.replace(model, kind=kind))
