"""Benchmark of the speech app on the Free Spoken Digit Dataset (and a Speech Commands
smoke run).

Trains the ``default`` preset without TFX (data.ingest -> local TFT analysis ->
trainer.train, the same code the pipeline runs) and compares it, in the same run, with a
classical baseline: a logistic regression on the 40-mel log spectrogram (25 ms frames every
10 ms) of the same padded 1 s clip, standardized. Scenarios:

  (a) recording-index split: indices ``--eval-indices`` (default 5-9) of every speaker are
      the eval split, the rest train (a validation split of whole training indices is
      carved for the choice of epoch; eval is never looked at while training): accuracy,
      per-speaker accuracy, most frequent confusions, training time, model size, and the
      TFLite variants (float32 / float16 / dynamic range / int8: size, latency, accuracy)
      of the exported PCM-input model on the whole eval split;
  (b) leave-one-speaker-out: each speaker held out in turn (``--holdout-speaker``), trained
      on the others: accuracy per held-out speaker, deep model and baseline;
  (c) transcribe: the CTC transcriber trained on strings built from training clips, scored
      on strings of 3-8 digits built from eval clips only (string accuracy, character
      error rate), greedy and beam decoding, as the served graph decodes;
  (d) Speech Commands sample (``--speech-commands DIR``): a smoke run of ingestion and a
      few epochs of training; ten clips per word are too few for an accuracy claim.

    .venv/bin/python benchmarks/speech.py --data /work/shared/datasets/speech/fsdd
        [--eval-indices 5-9] [--skip-loso] [--loso-speakers a,b] [--skip-transcribe]
        [--speech-commands DIR] [--epochs N] [--set FIELD=JSON] [--out results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import shutil
import sys
import time

import suite  # noqa: F401  (Keras policy before TensorFlow)
from suite.quiet import quiet

import common  # noqa: E402  (benchmarks/common.py)

quiet()  # before TensorFlow loads, so the stack's known noise stays out of the report

import numpy as np  # noqa: E402

from apps.speech import ctc, data, preprocessing, strings, trainer  # noqa: E402
from apps.speech.app import APP  # noqa: E402
from apps.speech.config import SpeechConfig  # noqa: E402
from apps.speech.features import (  # noqa: E402
    AUDIO_XF, LABEL, SPEAKER, TRANSCRIPT, TRANSCRIPT_IDS)
from suite import examples_io  # noqa: E402
from suite.config import replace_path, to_dict  # noqa: E402

PRESET = "default"
TARGETS = {"accuracy": 0.99, "string_accuracy": 0.95, "cer": 0.02,
           "training_minutes": 15.0}
DEFAULT_WORKSPACE = os.path.join("workspace", "benchmarks", "speech")


def say(message: str) -> None:
    """Prints a timestamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------
# Data


def split_files(examples_dir: str, split: str) -> list[str]:
    """The TFRecord files of one split."""
    return sorted(glob.glob(os.path.join(examples_dir, split, "*")))


def analyze(config: SpeechConfig, examples_dir: str, transform_dir: str):
    """TFT analysis of the train split (as the pipeline's Transform does)."""
    from components import transform_local

    if not os.path.exists(os.path.join(transform_dir, "transform_fn")):
        shutil.rmtree(transform_dir, ignore_errors=True)
        transform_local.analyze(
            split_files(examples_dir, "train"), preprocessing.raw_feature_spec(config),
            lambda x: preprocessing.preprocessing_fn(x, {"config": to_dict(config)}),
            transform_dir)
    import tensorflow_transform as tft

    return tft.TFTransformOutput(transform_dir)


def transformed(files: list[str], tft_output, config: SpeechConfig,
                keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Transformed features ``keys`` and the raw speakers of every example in ``files``."""
    import tensorflow as tf

    layer = tft_output.transform_features_layer()
    spec = preprocessing.raw_feature_spec(config)
    out: dict[str, list] = {k: [] for k in (*keys, SPEAKER)}
    for batch in examples_io.raw_dataset(files).batch(128):
        parsed = tf.io.parse_example(batch, spec)
        features = layer(parsed)
        for k in keys:
            out[k].append(features[k].numpy())
        out[SPEAKER].append(parsed[SPEAKER].numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------
# Baseline


def log_mel_features(pcm: np.ndarray, rate: int, n_mels: int = 40) -> np.ndarray:
    """[n, frames * n_mels]: the 40-mel log power spectrogram (25 ms Hann frames every
    10 ms) of each clip, in numpy."""
    import tensorflow as tf

    frame, hop = int(0.025 * rate), int(0.010 * rate)
    fft = 1 << (frame - 1).bit_length()
    window = np.hanning(frame + 1)[:-1]
    mel = tf.signal.linear_to_mel_weight_matrix(n_mels, fft // 2 + 1, rate, 20.0,
                                                0.95 * rate / 2).numpy()
    starts = range(0, pcm.shape[1] - frame + 1, hop)
    out = []
    for i in range(0, len(pcm), 256):
        frames = np.stack([pcm[i:i + 256, s:s + frame] for s in starts], axis=1)
        power = np.abs(np.fft.rfft(frames * window, n=fft, axis=-1)) ** 2
        out.append(np.log(power @ mel + 1e-6).reshape(len(frames), -1))
    return np.concatenate(out)


def train_baseline(x: np.ndarray, y: np.ndarray, rate: int):
    """Standardized 40-mel log spectrogram + logistic regression; returns (model, seconds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=0.1))
    model.fit(log_mel_features(x, rate), y)
    return model, time.perf_counter() - start


# --------------------------------------------------------------------------------------
# Keywords


def accuracy_by(predicted: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict:
    """Accuracy per group value (speakers)."""
    return {g.decode() if isinstance(g, bytes) else str(g):
            float(np.mean(predicted[groups == g] == labels[groups == g]))
            for g in sorted(set(groups.tolist()))}


def confusions(predicted: np.ndarray, labels: np.ndarray, classes) -> dict[str, int]:
    """Misclassified clips per (true -> predicted) pair, most frequent first."""
    pairs: dict[str, int] = {}
    for t, p in zip(labels[predicted != labels], predicted[predicted != labels], strict=True):
        key = f"{classes[t]}->{classes[p]}"
        pairs[key] = pairs.get(key, 0) + 1
    return dict(sorted(pairs.items(), key=lambda kv: -kv[1]))


def run_keywords(name: str, fsdd: str, config: SpeechConfig, workspace: str, *,
                 edge: bool) -> dict:
    """Ingests with ``config``, trains the deep model and the baseline, scores both on the
    eval split; with ``edge`` also exports the model and its TFLite variants."""
    held = (f"speaker {config.data.holdout_speaker}" if config.data.holdout_speaker
            else f"indices {config.data.eval_indices}")
    say(f"({name}) ingesting: {held} held out")
    ingested = data.ingest(fsdd, config, os.path.join(workspace, "examples"))
    config = APP.with_ingested(config, ingested)
    folder = ingested.examples_dir
    tft_output = analyze(config, folder,
                         os.path.join(workspace, f"transform-{ingested.fingerprint}"))
    b = config.train.batch_size
    train_ds = examples_io.transformed_dataset(split_files(folder, "train"), tft_output, b,
                                               AUDIO_XF, LABEL)
    val_ds = examples_io.transformed_dataset(split_files(folder, "validation"), tft_output, b,
                                             AUDIO_XF, LABEL)
    say(f"({name}) training {config.kind} ({config.train.epochs} epochs max)")
    start = time.perf_counter()
    result = trainer.train(train_ds, val_ds, config,
                           noises=trainer.noise_clips(split_files(folder, "train")), log=say)
    train_s = time.perf_counter() - start
    ev = transformed(split_files(folder, "eval"), tft_output, config, (AUDIO_XF, LABEL))
    probabilities = result.model.predict(ev[AUDIO_XF], batch_size=256, verbose=0)
    predicted = probabilities.argmax(axis=1)
    labels = ev[LABEL]
    tr = transformed(split_files(folder, "train"), tft_output, config, (AUDIO_XF, LABEL))
    baseline, baseline_s = train_baseline(tr[AUDIO_XF], tr[LABEL], config.data.sample_rate_hz)
    baseline_pred = baseline.predict(log_mel_features(ev[AUDIO_XF], config.data.sample_rate_hz))
    out = {
        "train_clips": int(ingested.counts["train"]),
        "validation_clips": int(ingested.counts["validation"]),
        "eval_clips": int(len(labels)),
        "epochs_run": len(result.history), "best_epoch": result.best_epoch,
        "validation": result.validation, "train_s": train_s,
        "accuracy": float(np.mean(predicted == labels)),
        "per_speaker": accuracy_by(predicted, labels, ev[SPEAKER]),
        "errors": confusions(predicted, labels, config.data.classes),
        "baseline_accuracy": float(np.mean(baseline_pred == labels)),
        "baseline_per_speaker": accuracy_by(baseline_pred, labels, ev[SPEAKER]),
        "baseline_fit_s": baseline_s,
        "params": int(result.model.count_params()),
    }
    say(f"({name}) deep {out['accuracy']:.4f}  baseline {out['baseline_accuracy']:.4f}  "
        f"trained in {train_s / 60:.1f} min (best epoch {result.best_epoch})")
    if edge:
        out["edge"] = edge_report(result.model, config, tft_output, folder,
                                  os.path.join(workspace, "model"))
    return out


def edge_report(model, config: SpeechConfig, tft_output, folder: str, out_dir: str) -> dict:
    """Exports the serving model and converts it to the four TFLite variants, each scored
    on the whole eval split (the shared TFLite export, as the pipeline runs it)."""
    from components.tflite_export import export_edge_models
    from serving.export import export_serving_model

    model_dir = os.path.join(out_dir, "serving_model")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    export_serving_model(model, tft_output, model_dir, trainer.export_spec(config),
                         model_name=config.model_name,
                         metadata={"app": APP.name, "config": to_dict(config),
                                   "mode": config.mode, "kind": config.kind})
    say("converting to TFLite (float32, float16, dynamic range, int8)")
    tflite_spec = APP.spec(config).tflite
    report = export_edge_models(
        model_dir, os.path.join(out_dir, "edge"),
        train_examples=examples_io.first_examples(split_files(folder, "train"), 10 ** 6),
        eval_examples=examples_io.first_examples(split_files(folder, "eval"), 10 ** 6),
        transform_output_dir=os.path.dirname(tft_output.transform_savedmodel_dir.rstrip("/")),
        label_key=LABEL, model_input_key=AUDIO_XF, edge=config.edge,
        head_from=tflite_spec.head_from, front_end_text=tflite_spec.front_end)
    report["saved_model_bytes"] = common.folder_bytes(model_dir)
    return report


# --------------------------------------------------------------------------------------
# Transcribe


def run_transcribe(fsdd: str, config: SpeechConfig, workspace: str) -> dict:
    """Trains the transcriber on strings of training clips; scores it on the eval strings
    (built from eval clips only) with greedy and beam decoding."""
    import tensorflow as tf

    config = dataclasses.replace(config, mode="transcribe").check()
    say("(c) ingesting: digit strings of the validation and eval clips")
    ingested = data.ingest(fsdd, config, os.path.join(workspace, "examples"))
    folder = ingested.examples_dir
    tft_output = analyze(config, folder,
                         os.path.join(workspace, f"transform-{ingested.fingerprint}"))
    pool = trainer.digit_pool(split_files(folder, "train"), config)
    val_ds = examples_io.transformed_dataset(split_files(folder, "validation"), tft_output,
                                             config.train.batch_size, AUDIO_XF, TRANSCRIPT_IDS)
    say(f"(c) training the {config.kind} transcriber ({config.train.epochs} epochs max, "
        f"{config.transcribe.train_strings} new strings each)")
    start = time.perf_counter()
    result = trainer.train_transcriber(pool, val_ds, config,
                                       noises=trainer.noise_clips(split_files(folder, "train")),
                                       log=say)
    train_s = time.perf_counter() - start
    ev = transformed(split_files(folder, "eval"), tft_output, config, (AUDIO_XF,))
    references = [tf.train.Example.FromString(r.numpy()).features.feature[TRANSCRIPT]
                  .bytes_list.value[0].decode()
                  for r in examples_io.raw_dataset(split_files(folder, "eval"))]
    probabilities = result.model.predict(ev[AUDIO_XF], batch_size=32, verbose=0)
    out = {"train_clips": len(pool), "eval_strings": len(references),
           "train_s": train_s, "epochs_run": len(result.history),
           "best_epoch": result.best_epoch, "validation": result.validation,
           "params": int(result.model.count_params())}
    for decoder in ("greedy", "beam"):
        digits, _ = ctc.decode(tf.constant(probabilities), decoder, config.transcribe.beam_width)
        hypotheses = [d.decode() for d in digits.numpy()]
        figures = strings.string_metrics(references, hypotheses)
        by_length = {}
        for n in range(config.transcribe.min_digits, config.transcribe.max_digits + 1):
            chosen = [i for i, r in enumerate(references) if len(r) == n]
            if chosen:
                by_length[n] = strings.string_metrics([references[i] for i in chosen],
                                                      [hypotheses[i] for i in chosen])
        out[decoder] = {**figures, "by_length": by_length}
        say(f"(c) {decoder}: string accuracy {figures['string_accuracy']:.4f}  "
            f"CER {figures['cer']:.4f}")
    return out


# --------------------------------------------------------------------------------------
# Speech Commands smoke run


def run_speech_commands(path: str, config: SpeechConfig, workspace: str, epochs: int) -> dict:
    """Ingests the sample (its lists name clips of the full data set: --subset) and trains
    a few epochs; the numbers only show that the path works."""
    config = replace_path(replace_path(replace_path(config, "data.format", "speech-commands"),
                                       "data.subset", True), "train.epochs", epochs).check()
    say(f"(d) Speech Commands sample: ingesting {path}")
    ingested = data.ingest(path, config, os.path.join(workspace, "examples"))
    config = APP.with_ingested(config, ingested)
    folder = ingested.examples_dir
    tft_output = analyze(config, folder,
                         os.path.join(workspace, f"transform-{ingested.fingerprint}"))
    b = config.train.batch_size
    start = time.perf_counter()
    result = trainer.train(
        examples_io.transformed_dataset(split_files(folder, "train"), tft_output, b,
                                        AUDIO_XF, LABEL),
        examples_io.transformed_dataset(split_files(folder, "validation"), tft_output, b,
                                        AUDIO_XF, LABEL),
        config, noises=trainer.noise_clips(split_files(folder, "train")))
    ev = transformed(split_files(folder, "eval"), tft_output, config, (AUDIO_XF, LABEL))
    predicted = result.model.predict(ev[AUDIO_XF], verbose=0).argmax(axis=1)
    return {"counts": ingested.counts, "classes": len(config.data.classes),
            "eval_source": ingested.summary["eval_source"],
            "list_entries_absent": ingested.summary["list_entries_absent"],
            "train_s": time.perf_counter() - start, "epochs": epochs,
            "accuracy": float(np.mean(predicted == ev[LABEL])),
            "chance": 1.0 / len(config.data.classes)}


# --------------------------------------------------------------------------------------
# Report


def print_report(results: dict) -> None:
    """Prints every figure of the run."""
    a = results.get("a")
    if a:
        print(f"\n(a) FSDD recording indices {results['eval_indices']} held out "
              f"({a['eval_clips']} eval clips; trained on {a['train_clips']}, validation "
              f"{a['validation_clips']})")
        common.print_table(["model", "accuracy", *a["per_speaker"]],
                           [["deep (" + results["kind"] + ")", common.fmt(a["accuracy"]),
                             *[common.fmt(v) for v in a["per_speaker"].values()]],
                            ["baseline (logreg, 40-mel)", common.fmt(a["baseline_accuracy"]),
                             *[common.fmt(v) for v in a["baseline_per_speaker"].values()]]])
        print(f"training: {a['train_s'] / 60:.1f} min, {a['epochs_run']} epochs (kept epoch "
              f"{a['best_epoch']}: validation accuracy "
              f"{a['validation'].get('validation_accuracy', float('nan')):.4f}); "
              f"{a['params']} parameters; baseline fit {a['baseline_fit_s']:.0f} s")
        print(f"most frequent deep errors: {dict(list(a['errors'].items())[:5])}")
        edge = a.get("edge")
        if edge:
            print(f"\nTFLite on the {edge['n_examples']} eval clips")
            common.print_variants(edge, edge["saved_model_bytes"])
    loso = results.get("b")
    if loso:
        print("\n(b) leave one speaker out (trained on the other speakers, all indices)")
        rows = [[s, common.fmt(r["accuracy"]), common.fmt(r["baseline_accuracy"]),
                 f"{r['train_s'] / 60:.1f}", r["best_epoch"]] for s, r in loso.items()]
        rows.append(["mean", common.fmt(np.mean([r["accuracy"] for r in loso.values()])),
                     common.fmt(np.mean([r["baseline_accuracy"] for r in loso.values()])), "", ""])
        common.print_table(["held-out speaker", "deep", "baseline", "train min", "kept epoch"],
                           rows)
    c = results.get("c")
    if c:
        print(f"\n(c) transcribe: {c['eval_strings']} strings of 3-8 digits built from eval "
              f"clips only; trained {c['train_s'] / 60:.1f} min ({c['epochs_run']} epochs, kept "
              f"{c['best_epoch']}), {c['params']} parameters")
        rows = []
        for decoder in ("greedy", "beam"):
            r = c[decoder]
            rows.append([decoder, common.fmt(r["string_accuracy"]), common.fmt(r["cer"])]
                        + [common.fmt(r["by_length"].get(n, {}).get("string_accuracy"), 3)
                           for n in range(3, 9)])
        common.print_table(["decoder", "string accuracy", "CER"]
                           + [f"{n} digits" for n in range(3, 9)], rows)
    d = results.get("d")
    if d:
        print(f"\n(d) Speech Commands sample (smoke run only: ~8 clips per word is too few "
              f"for an accuracy claim): {d['counts']} examples, {d['classes']} classes, eval "
              f"{d['eval_source']}; {d['epochs']} epochs in {d['train_s']:.0f} s; eval "
              f"accuracy {d['accuracy']:.3f} (chance {d['chance']:.3f})")
    print("\ntargets")
    rows = []
    if a:
        rows.append(["(a) accuracy", common.fmt(a["accuracy"]), f">= {TARGETS['accuracy']}",
                     "yes" if a["accuracy"] >= TARGETS["accuracy"] else "NO"])
        rows.append(["(a) beats the baseline", common.fmt(a["accuracy"] - a["baseline_accuracy"]),
                     "> 0", "yes" if a["accuracy"] > a["baseline_accuracy"] else "NO"])
        minutes = a["train_s"] / 60
        rows.append(["(a) training minutes", f"{minutes:.1f}",
                     f"<= {TARGETS['training_minutes']:g}",
                     "yes" if minutes <= TARGETS["training_minutes"] else "NO"])
    if c:
        best = c[results["decoder"]]
        rows.append(["(c) string accuracy", common.fmt(best["string_accuracy"]),
                     f">= {TARGETS['string_accuracy']}",
                     "yes" if best["string_accuracy"] >= TARGETS["string_accuracy"] else "NO"])
        rows.append(["(c) CER", common.fmt(best["cer"]), f"<= {TARGETS['cer']}",
                     "yes" if best["cer"] <= TARGETS["cer"] else "NO"])
    common.print_table(["target", "value", "goal", "met?"], rows)


# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="FSDD repository root or its recordings/ folder")
    parser.add_argument("--eval-indices", default="5-9", metavar="RANGES",
                        help="recording indices of scenario (a)'s eval split (default: 5-9)")
    parser.add_argument("--skip-loso", action="store_true", help="skip scenario (b)")
    parser.add_argument("--loso-speakers", metavar="A,B,...",
                        help="speakers held out in (b) (default: every speaker)")
    parser.add_argument("--skip-transcribe", action="store_true", help="skip scenario (c)")
    parser.add_argument("--skip-keywords", action="store_true", help="skip scenario (a)")
    parser.add_argument("--speech-commands", metavar="DIR",
                        help="Speech Commands sample for the smoke run (d)")
    parser.add_argument("--speech-commands-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, help="training epochs (overrides the preset)")
    common.add_output_arguments(parser, DEFAULT_WORKSPACE, overrides="every scenario")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the scenarios, prints the tables; 0 when every target is met."""
    args = parse_args(argv)
    start = time.perf_counter()
    config = SpeechConfig.preset(PRESET)
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        config = replace_path(config, name, value)
    if args.epochs is not None:
        config = replace_path(config, "train.epochs", args.epochs)
    config = config.check()
    workspace = os.path.abspath(args.workspace)
    indexed = replace_path(config, "data.eval_indices", args.eval_indices)
    results: dict = {"preset": PRESET, "config": to_dict(config), "kind": config.kind,
                     "data": os.path.abspath(args.data), "eval_indices": args.eval_indices,
                     "decoder": config.transcribe.decoder, "targets": TARGETS}
    if not args.skip_keywords:
        results["a"] = run_keywords("a", args.data, indexed, os.path.join(workspace, "a"),
                                    edge=True)
    if not args.skip_loso:
        speakers = (args.loso_speakers.split(",") if args.loso_speakers
                    else sorted({s for s in _speakers(args.data)}))
        results["b"] = {}
        for speaker in speakers:
            held = replace_path(config, "data.holdout_speaker", speaker)
            results["b"][speaker] = run_keywords(f"b:{speaker}", args.data, held,
                                                 os.path.join(workspace, "b"), edge=False)
    if not args.skip_transcribe:
        results["c"] = run_transcribe(args.data, indexed, os.path.join(workspace, "c"))
    if args.speech_commands:
        results["d"] = run_speech_commands(args.speech_commands, config,
                                           os.path.join(workspace, "d"),
                                           args.speech_commands_epochs)
    results["wall_s"] = time.perf_counter() - start
    print_report(results)
    common.finish(results, results["wall_s"], args.out)
    met = True
    if "a" in results:
        met &= results["a"]["accuracy"] >= TARGETS["accuracy"]
    if "c" in results:
        best = results["c"][config.transcribe.decoder]
        met &= best["string_accuracy"] >= TARGETS["string_accuracy"] and \
            best["cer"] <= TARGETS["cer"]
    return 0 if met else 1


def _speakers(path: str) -> list[str]:
    """The speakers of an FSDD folder (from the file names)."""
    found = data.scan(path, SpeechConfig().data)
    return sorted({c.speaker for c in found.clips})


if __name__ == "__main__":
    sys.exit(main())
