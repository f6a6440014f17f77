"""The sensor-vibration app, declared: bearing faults from accelerometer recordings."""

from __future__ import annotations

import argparse
import os
from typing import Any

from apps.base.app import App, Progress, classifier_metric_lines
from apps.sensor_vibration.config import (
    FORMATS, MODEL_KINDS, VibrationConfig, with_model_kind)
from apps.sensor_vibration.features import LABEL, SIGNAL_XF

STUDENT = "apps.sensor_vibration.model:student"  # the edge student (edge.distill)


class SensorVibration(App):
    """CWRU-style .mat or CSV recordings + manifest -> windows -> spectral / CNN / RNN."""

    name = "sensor_vibration"
    command = "sensor-vibration"
    about = ("bearing faults from accelerometer signals (CWRU .mat, CSV): spectral / 1D CNN "
             "/ LSTM / GRU")
    headline_metric = ("sparse_categorical_accuracy", "accuracy")
    config_class = VibrationConfig
    formats = FORMATS
    models = MODEL_KINDS
    data_metavar = "DIR"
    data_help = "folder with recordings and manifest.csv (default: generate demo data)"

    def add_config_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--channels", help="accelerometers to use, comma separated "
                                               "(default: DE)")
        parser.add_argument("--holdout-load", type=int, metavar="HP",
                            help="evaluate only on recordings at this motor load, train on the "
                                 "others (checks that the model carries over to an unseen "
                                 "operating point)")

    def overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"data.channels": args.channels.split(",") if args.channels else None,
                "data.holdout_load": args.holdout_load}

    def with_model(self, config: VibrationConfig, kind: str) -> VibrationConfig:
        return with_model_kind(config, kind)

    def demo_data(self, folder: str, config: VibrationConfig, progress: Progress) -> str:
        from apps.sensor_vibration import data

        if not os.path.exists(os.path.join(folder, config.data.manifest)):
            progress(f"no --data given: generating CWRU-like recordings in {folder}")
            # Long enough for about 8 windows' worth of signal in every time block.
            blocks_of_8_windows = 8 * config.data.window * config.data.split_blocks
            data.generate_synthetic(folder, fmt=config.data.format,
                                    channels=config.data.channels,
                                    n_samples=max(12000, blocks_of_8_windows))
        return folder

    def add_generate_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--samples", type=int, default=48000, help="samples per recording")

    def generate(self, args: argparse.Namespace) -> str:
        from apps.sensor_vibration import data

        return data.generate_synthetic(args.out, fmt=args.format, n_samples=args.samples,
                                       seed=args.seed)

    def spec(self, config: VibrationConfig):
        from apps.sensor_vibration.model import SPECTRAL_HEAD
        from apps.sensor_vibration.pipeline import eval_config
        from blocks.signal.welch_spectrum import LOG_FLOOR
        from pipelines.builder import ReportSpec, TFLiteSpec
        from suite.metrics import accuracy

        # The spectral model's .tflite files take the Welch log spectrum, which a device
        # computes with its FFT library: no int8 tensor holds the power spectrum's range.
        tflite = TFLiteSpec(student=STUDENT)
        if config.model.kind == "spectral":
            frame, hop = config.model.first_kernel, config.model.first_stride
            tflite = TFLiteSpec(student=STUDENT, head_from=SPECTRAL_HEAD, front_end=(
                f"Welch log power spectrum of each channel of the z-scored window minus its "
                f"mean: Hann frames of {frame} samples every {hop}, |DFT|^2 / {frame} "
                f"averaged over the frames, bins 1..{frame // 2} of channel 0, then of "
                f"channel 1 ..., log(p + {LOG_FLOOR:g})"))
        return self.pipeline_spec(eval_config=eval_config, label_key=LABEL,
                                  model_input_key=SIGNAL_XF, tflite=tflite, report=ReportSpec(
            explain="saliency", statistics=(("sparse_categorical_accuracy", accuracy),),
            intended_use=(
                "Tells the bearing condition of a rotating machine (healthy, or which fault "
                "and how large) from one accelerometer window, so that maintenance engineers "
                "can rank machines for inspection."),
            not_for=(
                "Shutting a machine down on its own, or machines, sensor positions, sample "
                "rates and fault types it was not trained on: a new machine needs its own "
                "evaluation first."),
            split_rule=(
                f"Each recording is cut into {config.data.split_blocks} contiguous time "
                "blocks; the last block of every recording is the eval split and no window "
                "crosses a block boundary" + (
                    f"; motor load {config.data.holdout_load} is held out as the whole eval "
                    "split" if config.data.holdout_load is not None else "") + "."),
            decision_rule="The most probable class of the window.",
            limitations=("Trained on the recorded machines and loads only; other speeds, "
                         "mountings and sensors shift the spectrum.",)))

    def metric_lines(self, metrics, config: VibrationConfig, ingested) -> list[str]:
        # Per-class slices are the recall line.
        return classifier_metric_lines(metrics, config.data.classes, "windows", width=10,
                                       skip=f"{LABEL}=")


APP = SensorVibration()
