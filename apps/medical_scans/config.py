"""Configuration of the medical-scans app: frozen dataclasses and named presets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from suite.config import AppConfig, TrainBase
from suite.metrics import THRESHOLD_RULES

FORMATS: tuple[str, ...] = ("folders", "npz", "dicom")
MODEL_KINDS: tuple[str, ...] = ("cnn", "resnet")
INTENSITY: tuple[str, ...] = ("none", "equalize", "clahe")


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how they are split."""

    # "folders": class folders of JPEG/PNG files; "dicom": class folders of DICOM files;
    # "npz": MedMNIST-style arrays (<split>_images, <split>_labels).
    format: str = "folders"
    # Exactly two classes, the negative first: label 1 is the positive finding that
    # sensitivity, specificity and the decision threshold refer to. Folder names (folders,
    # dicom) or label values 0 / 1 (npz).
    classes: tuple[str, ...] = ("NORMAL", "PNEUMONIA")
    # A regular expression on the file name whose first group is a subtype kept as a slicing
    # feature ("none" where it does not match); "" turns the subtype off.
    subtype_pattern: str = r"_(bacteria|virus)_"
    # A regular expression on the file name whose first group identifies the patient: all
    # images of a patient land in the same split. A file without a match is its own group.
    # The default reads the chest X-ray data set's names: person123_bacteria_4.jpeg, and
    # IM-0437-0001-0002.jpeg / NORMAL2-IM-0383-0001.jpeg for the normal scans.
    patient_pattern: str = r"^(person\d+|(?:NORMAL2-)?IM-\d+)[-_]"
    # Share of the patients of each class held out as the eval split (when the data has no
    # eval split of its own), and share of the remaining training patients kept aside as the
    # validation split (the decision threshold is chosen there, never on eval).
    eval_fraction: float = 0.15
    validation_fraction: float = 0.1
    split_seed: int = 0
    npz_eval_split: str = "val"  # npz: which arrays are the eval split ("val" or "test")
    # Bad image files: False = stop with an error naming the file; True = skip each with a
    # warning and count them in the run summary.
    skip_bad_files: bool = False
    # Both classes must be in the train and eval splits, or ingestion stops; True runs
    # anyway.
    allow_missing_classes: bool = False
    # DICOM window (center, width) when a file carries none: None = the full pixel range.
    dicom_default_window: tuple[float, float] | None = None
    # DICOM files whose Modality tag is not one of these are refused (a CT slice or an MR
    # is not a radiograph); () accepts any. A file without the tag is accepted.
    dicom_modalities: tuple[str, ...] = ("CR", "DX")
    # DICOM files whose ViewPosition tag is not one of these are refused, e.g. ("PA", "AP")
    # for a model trained on frontal chest films; () accepts any view. A file without the
    # tag is accepted.
    dicom_views: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    """Which network, at which input resolution."""

    kind: str = "cnn"  # "cnn" (compact) or "resnet" (keras-hub ResNet backbone, from scratch)
    image_size: int = 128  # images are decoded and resized to image_size x image_size
    channels: int = 1  # 1 = grayscale, 3 = RGB
    filters: tuple[int, ...] = (32, 64, 128, 256)  # per stage
    blocks: tuple[int, ...] = (2, 2, 2, 2)  # resnet: residual blocks per stage
    dropout: float = 0.3
    # Intensity normalisation inside the model, before the per-image standardisation:
    # "equalize" (global histogram equalisation) or "clahe" (contrast-limited adaptive
    # equalisation on clahe_tiles x clahe_tiles tiles, clip limit clahe_clip x the mean bin
    # count, as OpenCV's): the exposure curve of a scanner or its post-processing drops out.
    intensity: str = "none"
    clahe_tiles: int = 8
    clahe_clip: float = 2.0


@dataclass(frozen=True)
class TrainConfig(TrainBase):
    """Optimisation (epochs, batch size, learning rate, seed, weight decay), class balance
    and training-time augmentation."""

    weight_decay: float = 1e-4
    class_weights: bool = True  # weight classes by inverse frequency (imbalanced data)
    # Augmentation, training batches only: small rotations (fraction of a full turn), zoom,
    # shifts, and a random gamma (exposure curve: gamma = exp(U(-g, g))); no flips by default
    # (a mirrored chest puts the heart on the right). Linear contrast and brightness changes
    # are left out: the model standardises each image, which undoes them.
    rotation: float = 0.03
    zoom: float = 0.1
    translation: float = 0.05
    gamma: float = 0.25
    horizontal_flip: bool = False
    # Acquisition augmentation (scanners and their post-processing differ in sharpness and
    # resolution): half of the training batches are blurred (Gaussian, sigma U(0, blur)
    # pixels) and half lose resolution (down-sampled by U(1, downscale), then back up).
    # 0 / 1 turn them off.
    blur: float = 0.0
    downscale: float = 1.0
    # Stop after this many minutes of training (None = all epochs); the weights of the
    # epoch with the best validation AUC are kept.
    max_minutes: float | None = None


@dataclass(frozen=True)
class DecisionConfig:
    """How the served model decides: the threshold rule applied on the validation split,
    an optional refer band around the threshold, and the out-of-distribution check."""

    # "youden": the largest sensitivity + specificity - 1; "sensitivity": the highest
    # threshold whose validation sensitivity is at least target + margin; "specificity":
    # the lowest threshold whose validation specificity is at least target + margin. The
    # margin is room for the drop expected on scans from other sites.
    rule: str = "youden"
    target: float = 0.95
    margin: float = 0.0
    # Half-width of the "refer" band around the threshold, on the logit scale of the
    # positive probability (1.0: probabilities from about 0.27 to 0.73 when the threshold
    # is 0.5): images inside it are referred to a reader as unsure. 0 = no band.
    refer_band: float = 0.0
    # Out-of-distribution check: the squared Mahalanobis distance of the model's pooled
    # features to the training images' (class means, shared covariance shrunk towards the
    # identity by ood_shrinkage); images farther than this quantile of the validation
    # images' distances are referred as unlike the training data. None = no check.
    ood_quantile: float | None = 0.995
    ood_shrinkage: float = 0.1


@dataclass(frozen=True)
class EvalConfig:
    """What a model must reach to be blessed and pushed (on the eval split)."""

    min_auc: float = 0.95
    min_sensitivity: float = 0.9
    # The other class's recall: a model calling everything positive is never blessed.
    min_specificity: float = 0.5
    max_auc_drop: float = 0.01  # largest AUC drop tolerated against the last blessed model


@dataclass(frozen=True)
class MedicalConfig(AppConfig):
    """The whole app configuration; JSON-safe so it travels through TFX custom_config."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    model_name: str = "medical_scans"

    CHOICES = {"model.kind": MODEL_KINDS, "model.intensity": INTENSITY,
               "decision.rule": THRESHOLD_RULES}

    def check(self) -> MedicalConfig:
        """The config when its fields are consistent; raises naming the bad field."""
        check_data(self.data)
        super().check()
        m = self.model
        if m.kind == "resnet" and (not m.filters or m.filters[0] != 64):
            raise ValueError(f"model.filters: the keras-hub ResNet backbone's first stage has "
                             f"64 filters, got {list(m.filters)}")
        if m.channels not in (1, 3):
            raise ValueError(f"model.channels: expected 1 (grayscale) or 3 (RGB), got "
                             f"{m.channels}")
        if m.image_size < 16:
            raise ValueError(f"model.image_size: expected at least 16 pixels, got "
                             f"{m.image_size}")
        check_decision(self.decision)
        return self


PRESETS: dict[str, MedicalConfig] = {
    # Seconds on a laptop core: for tests and the demo on generated images.
    "tiny": MedicalConfig(
        model=ModelConfig(kind="cnn", image_size=32, filters=(8, 16, 32), dropout=0.1),
        train=TrainConfig(epochs=20, batch_size=16, learning_rate=3e-3, rotation=0.0, zoom=0.0,
                          translation=0.0, gamma=0.0),
        eval=EvalConfig(min_auc=0.7, min_sensitivity=0.5, max_auc_drop=0.05),
    ),
    # The benchmark configuration: a ResNet trained from scratch at 128 px, about 30 minutes
    # on 2 CPU cores for the chest X-ray training set. CLAHE in front of the network,
    # acquisition augmentation (blur, lower resolution, more zoom) and a threshold that keeps
    # validation sensitivity at 0.95 + 0.02: chosen on the benchmark's batch-held-out split
    # and perturbation sweep, where they kept specificity under blur and lower resolution.
    "default": MedicalConfig(
        model=ModelConfig(kind="resnet", image_size=128, filters=(64, 96, 128, 192),
                          blocks=(1, 1, 1, 1), intensity="clahe"),
        train=TrainConfig(epochs=30, batch_size=32, learning_rate=2e-3, max_minutes=30.0,
                          zoom=0.2, blur=1.5, downscale=3.0),
        decision=DecisionConfig(rule="sensitivity", target=0.95, margin=0.02),
    ),
    "full": MedicalConfig(
        model=ModelConfig(kind="resnet", image_size=224, filters=(64, 128, 256, 512),
                          blocks=(2, 2, 2, 2), intensity="clahe"),
        train=TrainConfig(epochs=40, batch_size=32, learning_rate=1e-3, zoom=0.2, blur=2.5,
                          downscale=3.0),
        decision=DecisionConfig(rule="sensitivity", target=0.95, margin=0.02),
    ),
}


MedicalConfig.PRESETS = PRESETS


def check_data(d: DataConfig) -> DataConfig:
    """Returns ``d`` when its fields are consistent; raises naming the bad field."""
    if d.format not in FORMATS:
        raise ValueError(f"data.format: expected one of {list(FORMATS)}, got {d.format!r}")
    if len(d.classes) != 2 or len(set(d.classes)) != 2:
        raise ValueError(f"data.classes: expected two distinct classes (negative, positive), "
                         f"got {list(d.classes)}")
    for name in ("eval_fraction", "validation_fraction"):
        value = getattr(d, name)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"data.{name}: expected a fraction in [0, 1), got {value}")
    if d.format == "npz" and d.npz_eval_split not in ("val", "test"):
        raise ValueError(f"data.npz_eval_split: expected 'val' or 'test', got "
                         f"{d.npz_eval_split!r}")
    for name in ("subtype_pattern", "patient_pattern"):
        try:
            re.compile(getattr(d, name))
        except re.error as e:
            raise ValueError(f"data.{name}: invalid regular expression ({e})") from e
    return d


def check_decision(d: DecisionConfig) -> DecisionConfig:
    """Returns ``d`` when its fields are consistent; raises naming the bad field."""
    if not 0.0 < d.target <= 1.0:
        raise ValueError(f"decision.target: expected a fraction in (0, 1], got {d.target}")
    if not 0.0 <= d.margin < 1.0:
        raise ValueError(f"decision.margin: expected a fraction in [0, 1), got {d.margin}")
    if d.refer_band < 0:
        raise ValueError(f"decision.refer_band: expected a logit half-width >= 0, got "
                         f"{d.refer_band}")
    if d.ood_quantile is not None and not 0.5 <= d.ood_quantile <= 1.0:
        raise ValueError(f"decision.ood_quantile: expected a quantile in [0.5, 1] or null, "
                         f"got {d.ood_quantile}")
    if not 0.0 <= d.ood_shrinkage <= 1.0:
        raise ValueError(f"decision.ood_shrinkage: expected a fraction in [0, 1], got "
                         f"{d.ood_shrinkage}")
    return d
