"""The speech app, declared: keyword spotting and spoken digit strings from WAV files."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from apps.base.app import App, Progress, classifier_metric_lines
from apps.speech.config import FORMATS, MODEL_KINDS, MODES, SpeechConfig, with_model_kind
from apps.speech.features import AUDIO_XF, LABEL, SPLITS, TRANSCRIPT

# Summary label -> TFMA metric name (transcribe mode).
TRANSCRIBE_METRICS = {"CER": "character_error_rate", "string accuracy": "string_accuracy"}


def _slice_sort(name: str) -> tuple:
    return (name != "overall", name)


class Speech(App):
    """FSDD / Speech Commands / class folders of WAV files -> splits without speaker
    leakage -> DS-CNN / KWT / CRNN keyword models, or a CTC CRNN for digit strings."""

    name = "speech"
    command = "speech"
    about = ("keyword spotting and spoken digit strings from WAV files (FSDD, Speech Commands, "
             "class folders): DS-CNN / KWT / CRNN, CTC transcriber")
    headline_metric = ("sparse_categorical_accuracy", "accuracy")
    config_class = SpeechConfig
    formats = FORMATS
    models = MODEL_KINDS
    modes = MODES
    data_metavar = "DIR"
    data_help = ("folder of WAV clips in --format's layout (default: generate demo clips)")

    def add_config_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--eval-indices", metavar="RANGES",
                            help="fsdd: recording indices held out for evaluation, e.g. 0-4 "
                                 "(FSDD's official test split, the default) or 5-9")
        parser.add_argument("--holdout-speaker", metavar="NAME",
                            help="fsdd: evaluate on this speaker only, train on the others "
                                 "(speaker-independent)")
        parser.add_argument("--keywords", metavar="WORD,WORD,...",
                            help="speech-commands / folders: these words are the classes, "
                                 "every other word is _unknown_")
        parser.add_argument("--sample-rate", type=int, metavar="HZ",
                            help="rate every clip is resampled to (default: the preset's)")
        parser.add_argument("--subset", action="store_true",
                            help="speech-commands: the folder is a sample of the data set its "
                                 "list files describe (listed clips that are absent are "
                                 "counted, not errors)")

    def overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"data.eval_indices": args.eval_indices,
                "data.holdout_speaker": args.holdout_speaker,
                "data.keywords": args.keywords.split(",") if args.keywords else None,
                "data.sample_rate_hz": args.sample_rate,
                "data.subset": True if args.subset else None}

    def with_model(self, config: SpeechConfig, kind: str) -> SpeechConfig:
        return with_model_kind(config, kind)

    def demo_data(self, folder: str, config: SpeechConfig, progress: Progress) -> str:
        from apps.speech import data

        fmt = config.data.format
        path = os.path.join(folder, f"clips-{fmt}")
        if not os.path.exists(path):
            progress(f"no --data given: generating {fmt} clips in {path}")
            classes = data.digit_names(fmt) if config.mode == "transcribe" else None
            data.generate_synthetic(path, fmt, classes=classes, speakers=4, per_speaker=5)
        return path

    def add_generate_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--speakers", type=int, default=4)
        parser.add_argument("--per-speaker", type=int, default=5,
                            help="clips per speaker and class (FSDD: recording indices)")
        parser.add_argument("--classes", metavar="NAME,NAME,...",
                            help="class names (default: the digits for fsdd, ten command "
                                 "words otherwise)")
        parser.add_argument("--sample-rate", type=int, metavar="HZ",
                            help="default: 8000 for fsdd, 16000 otherwise")
        parser.add_argument("--encoding", default="pcm16",
                            choices=["pcm8", "pcm16", "pcm24", "pcm32", "float32", "float64",
                                     "alaw", "mulaw"])

    def generate(self, args: argparse.Namespace) -> str:
        from apps.speech import data

        return data.generate_synthetic(
            args.out, args.format, classes=args.classes.split(",") if args.classes else None,
            speakers=args.speakers, per_speaker=args.per_speaker, sample_rate=args.sample_rate,
            seed=args.seed, encoding=args.encoding)

    def ingest(self, path: str, config: SpeechConfig, out_root: str, progress: Progress):
        from apps.speech import data

        return data.ingest(path, config, out_root, progress=progress)

    def with_ingested(self, config: SpeechConfig, ingested) -> SpeechConfig:
        """The classes the data holds (keywords mode), in the examples' label order."""
        if config.mode == "transcribe":
            return config
        classes = tuple(ingested.summary["classes"])
        return dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                    classes=classes))

    def ingested_lines(self, ingested) -> list[str]:
        s = ingested.summary
        lines = [f"  {s['clips']} clips, {len(s['classes'])} classes, eval: {s['eval_source']}",
                 "  speakers: " + ", ".join(f"{k} {v}" for k, v in s["speakers"].items())
                 + f"; in both train and eval: {s['speakers_in_train_and_eval']}"]
        if s.get("string_counts"):
            lines.append("  digit strings: " + ", ".join(
                f"{k} {v}" for k, v in s["string_counts"].items())
                + " (built from each split's own clips)")
        from apps.speech.data import GENERATED_NOISE

        noise = s.get("noise_recordings", [])
        lines.append(f"  background noise recordings: {len(noise)}" if noise != [GENERATED_NOISE]
                     else "  no background noise recordings: training mixes in white noise")
        for list_name, n in s.get("list_entries_absent", {}).items():
            lines.append(f"  {list_name}: {n} listed clips absent (--subset)")
        if s.get("clips_longer_than_clip"):
            lines.append(f"  {s['clips_longer_than_clip']} clip(s) longer than {s['clip_ms']} "
                         "ms: the model hears their loudest stretch")
        return lines

    def spec(self, config: SpeechConfig):
        from apps.speech.model import NORMALIZE, front_end_text
        from apps.speech.pipeline import OPTIONAL_INT8, eval_config
        from pipelines.builder import ReportSpec, TFLiteSpec
        from suite.metrics import accuracy

        transcribe = config.mode == "transcribe"
        return self.pipeline_spec(
            name=f"{self.command}-transcribe" if transcribe else self.command,
            eval_config=eval_config, label_key=TRANSCRIPT if transcribe else LABEL,
            model_input_key=AUDIO_XF, splits=SPLITS, trainer_eval_split="validation",
            # The .tflite files take the log-mel spectrogram: a device computes it with its
            # audio front end (an int8 tensor cannot hold the power spectrum before the log).
            tflite=TFLiteSpec(optional_variants=("int8",) if transcribe
                              else OPTIONAL_INT8[config.kind], head_from=NORMALIZE,
                              front_end=front_end_text(config),
                              student="" if transcribe else "apps.speech.model:student"),
            report=ReportSpec(
                explain="" if transcribe else "saliency",
                statistics=() if transcribe else (("sparse_categorical_accuracy", accuracy),),
                intended_use=(
                    "Transcribes spoken digit strings from short WAV clips." if transcribe else
                    "Spots which keyword (of the configured list) a short WAV clip holds, for "
                    "hands-free commands on a device."),
                not_for=(
                    "Identifying speakers, open-vocabulary speech, or safety-critical commands "
                    "without a confirmation step; speakers, microphones and noise unlike the "
                    "training clips need their own evaluation."),
                split_rule=(
                    f"Speaker {config.data.holdout_speaker} held out as the eval split."
                    if config.data.holdout_speaker else
                    f"FSDD: recording indices {config.data.eval_indices} are the eval split; "
                    "Speech Commands: its own testing and validation lists (speakers never "
                    "cross splits)."),
                decision_rule=("Greedy CTC decoding of the digit string." if transcribe else
                               "The most probable keyword of the clip."),
                limitations=("Speakers in the eval split may also be in train (FSDD index "
                             "split): speaker-independent accuracy is lower.",)
                if not config.data.holdout_speaker else ()))

    def metric_lines(self, metrics, config: SpeechConfig, ingested) -> list[str]:
        lines = []
        if config.mode == "transcribe":
            for name, values in sorted(metrics.items(), key=lambda kv: _slice_sort(kv[0])):
                figures = "  ".join(f"{label} {values[key]:.4f}"
                                    for label, key in TRANSCRIBE_METRICS.items() if key in values)
                count = values.get("example_count")
                lines.append(f"  {name:<18} {figures}  strings {int(count) if count else '?'}")
            return lines
        return classifier_metric_lines(metrics, config.data.classes, "clips", order=_slice_sort)

    def pushed_lines(self, pushed_dir: str) -> list[str]:
        from serving.export import load_metadata

        m = load_metadata(pushed_dir)
        if m.get("mode") == "transcribe":
            return [f"  transcriber ({m['kind']}): WAV bytes -> digit string; takes "
                    f"{m['clip_samples']} samples at {m['sample_rate_hz']} Hz"]
        return [f"  {m['kind']} keyword model: {len(m['classes'])} classes; takes "
                f"{m['clip_samples']} samples at {m['sample_rate_hz']} Hz"]


APP = Speech()
