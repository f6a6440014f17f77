"""Explanation samples of a pushed model for the run report: PNG figures of why the served
model decided as it did on a few correctly and a few wrongly predicted eval examples.

The predictions are the served ones (``serving_default`` of the version folder); the model
inputs and labels come from its ``transform_features`` signature (the label falls back to
the raw feature of the examples when the transform does not pass it on); the explanations
are computed on the Keras model kept inside the same export
(``assets.extra/keras/model.keras``), after checking that it gives the served outputs
(``blocks.vision.explanation.check_parity``), so that what is explained is what is served.
Kinds:

- ``grad_cam`` (image classifiers): the Grad-CAM heatmap of the predicted class on the
  layer ``features`` (the image apps' feature map; also inside a nested core model, as
  with test-time orientations) or else the last layer with a 4-D output, drawn as the
  image and the heatmap over it, side by side;
- ``saliency`` (signal and audio classifiers): the absolute gradient of the predicted
  class's log-probability with respect to the model input or, with ``head_from``, to the
  input of that layer (``serving.export.split_front_end``: e.g. the Welch spectrum or the
  log-mel spectrogram the front end computes), scaled to a peak of 1 per example. A 2-D
  feature (time x frequency; a trailing channel axis of size 1 is dropped) is drawn as an
  image with the saliency as a heat map beside it; a 1-D feature (or a few channels of
  one) as a line with the saliency shaded under it;
- ``item_influence`` (next-item rankers, whose Keras model scores every vocabulary item
  from left-padded history ids, 0 = padding): for the top-1 item, the drop of its score
  when each history item is replaced by the padding id (occlusion), as bars over the
  history positions. A session counts as correct when the next item is in the top 20.

A model these cannot explain (no class probabilities, per-frame probabilities of a
transcriber, an anomaly score, a Keras model that does not give the served outputs)
yields no samples and a note saying why, never an exception.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import suite  # noqa: F401  (Keras policy before TensorFlow)

KINDS = ("grad_cam", "saliency", "item_influence")
MAX_EXAMPLES = 256  # predictions are computed on at most this many examples
TOP_K = 20  # a ranker's session is correct when its next item is in the top TOP_K
PADDING_ID = 0  # the rankers' history padding (left-padded ids, 1..V items)
UNKNOWN_ITEM = "(unknown item)"  # a history item outside the ranker's vocabulary
FEATURES = "features"  # the layer the image apps name their Grad-CAM feature map
# Largest difference tolerated between the kept Keras model's and the served outputs.
PARITY_TOLERANCE = 1e-3
_DPI = 100


@dataclass(frozen=True)
class Sample:
    """One explained example: its figure and what the model decided."""

    file: str  # PNG file name, relative to out_dir
    caption: str  # e.g. "correct: inner_race (p=0.93)"
    correct: bool


@dataclass(frozen=True)
class _Served:
    """The examples through the served model: its outputs, the transformed model input,
    the labels and the kept Keras model."""

    outputs: dict
    x: np.ndarray
    labels: np.ndarray
    keras_model: object


def explanation_samples(version_dir: str, serialized: Sequence[bytes], *, label_key: str,
                        model_input_key: str, kind: str, head_from: str = "",
                        out_dir: str, per_group: int = 3,
                        class_names: Sequence[str] | None = None) -> tuple[list[Sample], str]:
    """PNG figures explaining the served model on up to ``per_group`` correctly and
    ``per_group`` wrongly predicted examples of ``serialized`` (raw tf.Examples with the label);
    returns the samples and a note (empty, or why there are fewer/none, e.g. no wrong
    predictions among the examples, or the model's outputs are not class probabilities).

    Only the first ``MAX_EXAMPLES`` examples are predicted; the samples are the first correct
    and the first wrong ones among them, correct ones first. ``class_names`` name the
    classifier's class ids (default: the served ``classes`` output, for the classes it
    predicts). Raises ValueError for an unknown ``kind``, FileNotFoundError for a missing
    version folder, and ValueError when the transformed features lack ``model_input_key``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    if per_group < 1:
        raise ValueError(f"per_group: expected at least 1, got {per_group}")
    if not os.path.isdir(version_dir):
        raise FileNotFoundError(f"{version_dir}: no such model version folder")
    examples = [bytes(e) for e in itertools.islice(serialized, MAX_EXAMPLES)]
    if not examples:
        return [], "no examples to explain"
    served = _serve(version_dir, examples, label_key, model_input_key)
    if kind == "item_influence":
        return _ranker_samples(version_dir, served, out_dir, per_group)
    return _classifier_samples(version_dir, served, kind, head_from, out_dir, per_group,
                               class_names)


def _serve(version_dir: str, examples: list[bytes], label_key: str,
           model_input_key: str) -> _Served:
    import tensorflow as tf

    from serving.export import TRANSFORM_FEATURES, load_keras_model

    loaded = tf.saved_model.load(version_dir)
    batch = tf.constant(examples, tf.string)
    outputs = {k: v.numpy() for k, v in
               loaded.signatures["serving_default"](examples=batch).items()}
    transformed = loaded.signatures[TRANSFORM_FEATURES](examples=batch)
    if model_input_key not in transformed:
        raise ValueError(f"{version_dir}: the transformed features have no model input "
                         f"{model_input_key!r} (they are {sorted(transformed)})")
    labels = (transformed[label_key].numpy() if label_key in transformed
              else _raw_labels(examples, label_key))
    return _Served(outputs, transformed[model_input_key].numpy(), labels.reshape(len(examples)),
                   load_keras_model(version_dir))


def _raw_labels(examples: list[bytes], label_key: str) -> np.ndarray:
    """The raw label feature of each example (an int or a string)."""
    from components.model_card import feature_lists

    values = feature_lists(examples, label_key)
    for i, value in enumerate(values):
        if not value:
            import tensorflow as tf

            present = sorted(tf.train.Example.FromString(examples[i]).features.feature)
            raise ValueError(f"example {i}: no label feature {label_key!r} (has {present})")
        if len(value) != 1:
            raise ValueError(f"example {i}: expected one {label_key!r} value, got {value}")
    return np.array([value[0] for value in values])


def _spread(candidates: np.ndarray, classes: np.ndarray | None, n: int) -> np.ndarray:
    """Up to ``n`` of ``candidates``: with ``classes``, one per class first (in order of
    appearance), so that the samples are not ``n`` near-copies of one class."""
    if classes is None:
        return candidates[:n]
    first, rest, seen = [], [], set()
    for i in candidates:
        (rest if classes[i] in seen else first).append(i)
        seen.add(classes[i])
    return np.array((first + rest)[:n], dtype=int)


def _pick(correct: np.ndarray, per_group: int, what: str,
          classes: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Up to ``per_group`` correct and ``per_group`` wrong examples (of different
    ``classes`` where they can be), and a note when a group falls short."""
    right = _spread(np.flatnonzero(correct), classes, per_group)
    wrong = _spread(np.flatnonzero(~correct), classes, per_group)
    notes = []
    for name, group in (("correct", right), ("wrong", wrong)):
        if len(group) == 0:
            notes.append(f"no {name} {what} among the {len(correct)} examples")
        elif len(group) < per_group:
            notes.append(f"only {len(group)} {name} {what} among the {len(correct)} examples")
    return np.concatenate([right, wrong]).astype(int), "; ".join(notes)


def _predict(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The Keras model's outputs, a batch at a time (bounded memory for large inputs)."""
    return np.concatenate([np.asarray(model(x[i:i + batch_size], training=False))
                           for i in range(0, len(x), batch_size)])


def _parity(keras_outputs, served_outputs, where: str) -> str:
    """Empty when the Keras model gives the served outputs, else why not."""
    from blocks.vision.explanation import ParityError, check_parity

    try:
        check_parity(keras_outputs, served_outputs, PARITY_TOLERANCE, where)
    except ParityError as e:
        return f"not explained: {e}"
    return ""


# --- classifiers: Grad-CAM and saliency ----------------------------------------------------


def _classifier_samples(version_dir, served: _Served, kind, head_from, out_dir, per_group,
                        class_names) -> tuple[list[Sample], str]:
    outputs = served.outputs
    probabilities = outputs.get("probabilities")
    if probabilities is None:
        if "items" in outputs:
            return [], ("not explained: the model is a ranker (scores over items, not class "
                        "probabilities); item_influence explains it")
        return [], (f"not explained: the served outputs ({', '.join(sorted(outputs))}) are "
                    f"not class probabilities")
    if probabilities.ndim != 2:
        return [], (f"not explained: the served probabilities have shape "
                    f"{list(probabilities.shape)}, one distribution per frame (a sequence "
                    f"model such as a CTC transcriber), not one class decision per example")
    labels = served.labels
    if labels.dtype.kind not in "iu":
        return [], (f"not explained: the labels are not class ids (got {labels.dtype} "
                    f"values such as {labels[0]!r})")
    n_classes = probabilities.shape[1]
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(f"class_names: expected {n_classes} names (the served probabilities' "
                         f"columns), got {len(class_names)}")
    keras_probabilities = _predict(served.keras_model, served.x)
    why = _parity(keras_probabilities, probabilities, version_dir)
    if why:
        return [], why
    predicted = np.asarray(outputs.get("class_ids", np.argmax(probabilities, axis=-1)))
    predicted = predicted.reshape(-1).astype(int)
    names = _class_names(class_names, outputs, predicted, n_classes, version_dir)
    chosen, note = _pick(predicted == labels, per_group, "predictions", classes=labels)
    if len(chosen) == 0:
        return [], note

    x = served.x[chosen]
    if kind == "grad_cam":
        figures = _grad_cam_figures(served.keras_model, x, predicted[chosen], names)
    else:
        figures = _saliency_figures(served.keras_model, x, predicted[chosen], head_from,
                                    keras_probabilities[chosen], version_dir)
    if isinstance(figures, str):
        return [], figures
    samples = []
    for j, (i, figure) in enumerate(zip(chosen, figures, strict=True)):
        p = float(probabilities[i, predicted[i]])
        ok = bool(predicted[i] == labels[i])
        label = int(labels[i])
        label_name = names[label] if 0 <= label < n_classes else f"class {label}"
        caption = (f"correct: {names[predicted[i]]} (p={p:.2f})" if ok else
                   f"wrong: label {label_name}, predicted {names[predicted[i]]} (p={p:.2f})")
        samples.append(_save(figure, caption, out_dir, f"{kind}_{j:02d}_example{i}.png", ok))
    return samples, note


def _class_names(class_names, outputs: dict, predicted: np.ndarray, n_classes: int,
                 version_dir: str) -> list:
    """A name per class id: ``class_names`` when given; else the served ``classes`` of the
    ids predicted, the app config's ``data.classes`` kept in the export's metadata for the
    others, and ``class <id>`` where neither names it."""
    from serving.export import load_metadata

    if class_names is not None:
        return [str(c) for c in class_names]
    names = [f"class {c}" for c in range(n_classes)]
    try:
        configured = load_metadata(version_dir).get("config", {}).get("data", {}).get("classes")
    except FileNotFoundError:
        configured = None
    if isinstance(configured, list) and len(configured) == n_classes:
        names = [str(c) for c in configured]
    for class_id, name in zip(predicted, outputs.get("classes", ()), strict=False):
        names[class_id] = name.decode() if isinstance(name, bytes) else str(name)
    return names


def _grad_cam_target(model):
    """(model, layer name) that Grad-CAM explains, or None: the layer ``features`` of the
    model or of a model nested in it, else the model's last layer with a 4-D output."""
    import keras

    for candidate in [model, *(m for m in model.layers if isinstance(m, keras.Model))]:
        if any(layer.name == FEATURES and len(layer.output.shape) == 4
               for layer in candidate.layers):
            return candidate, FEATURES
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            rank = len(layer.output.shape)
        except (AttributeError, ValueError):  # several outputs, or called more than once
            continue
        if rank == 4:
            return model, layer.name
    return None


def _grad_cam_figures(model, images: np.ndarray, class_ids: np.ndarray, names: list):
    """A figure per image (the image, the Grad-CAM heatmap over it), or why none."""
    from blocks.vision import gradcam
    from blocks.vision.explanation import explain_grad_cam

    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        return (f"not explained: grad_cam needs images [height, width, 1 or 3 channels] as the "
                f"model input, got shape {list(images.shape[1:])}")
    target = _grad_cam_target(model)
    if target is None:
        return f"not explained: {model.name} has no 4-D feature map for Grad-CAM"
    explained, layer = target
    heat = explain_grad_cam(explained, images, class_ids, layer)
    figures = []
    for image, h, class_id in zip(images, heat, class_ids, strict=True):
        figure, (left, right) = _figure(2, (7.0, 3.6))
        left.imshow(gradcam.overlay(image, np.zeros_like(h)))  # the plain image, as RGB
        left.set_title("input")
        right.imshow(gradcam.overlay(image, h))
        right.set_title(f"Grad-CAM of {names[class_id]} ({layer})")
        for ax in (left, right):
            ax.set_axis_off()
        figures.append(figure)
    return figures


def saliency_maps(model, x: np.ndarray, class_ids: Sequence[int],
                  head_from: str = "") -> tuple[np.ndarray, np.ndarray]:
    """``(features, saliency)``: the tensor explained (``x``, or with ``head_from`` the
    front end's output: the input of that layer) and the absolute gradient of each
    example's ``class_ids`` log-probability with respect to it, divided by its maximum per
    example (all zero when the gradient is)."""
    import tensorflow as tf

    from serving.export import split_front_end

    explained = model
    features = np.asarray(x)
    if head_from:
        front_end, explained = split_front_end(model, head_from)
        features = np.asarray(front_end([features], training=False))  # its inputs: a list
    if features.dtype.kind not in "f":
        raise ValueError(f"saliency needs a float input to take the gradient by, got "
                         f"{features.dtype}")
    ids = tf.constant(np.asarray(class_ids, np.int32).reshape(-1))
    z = tf.convert_to_tensor(features, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(z)
        probabilities = explained(z, training=False)
        chosen = tf.gather(probabilities, ids, axis=1, batch_dims=1)
        score = tf.math.log(tf.maximum(chosen, 1e-30))
    gradient = np.abs(tape.gradient(score, z).numpy())
    peak = gradient.reshape(len(gradient), -1).max(axis=1)
    peak = np.where(peak > 0, peak, 1.0).reshape((-1,) + (1,) * (gradient.ndim - 1))
    return features, (gradient / peak).astype(np.float32)


def _saliency_figures(model, x, class_ids, head_from, keras_probabilities, where):
    """A figure per example (feature and saliency), or why none."""
    if x.dtype.kind not in "f":
        return (f"not explained: saliency needs a float model input, got {x.dtype} (item ids "
                f"or other integers have no gradient)")
    if head_from:
        from serving.export import split_front_end

        front_end, head = split_front_end(model, head_from)
        why = _parity(np.asarray(head(front_end([x], training=False), training=False)),
                      keras_probabilities, f"{where} split at head_from={head_from!r}")
        if why:
            return why
    features, saliency = saliency_maps(model, x, class_ids, head_from)
    source = f"input of layer {head_from!r}" if head_from else "model input"
    shape = list(features.shape[1:])
    if len(shape) == 3 and shape[-1] == 1:  # a trailing channel axis
        features, saliency = features[..., 0], saliency[..., 0]
    if features.ndim == 2:
        features, saliency = features[..., None], saliency[..., None]  # one channel
    if features.ndim != 3:
        return (f"not explained: saliency draws 1-D or 2-D features, the {source} has shape "
                f"{shape}")
    # [n, length, channels]: a few channels are lines; more are frequency bins of an image.
    lines = features.shape[-1] <= 4
    draw = _lines_figure if lines else _image_figure
    return [draw(f, s, source, head_from) for f, s in zip(features, saliency, strict=True)]


def _image_figure(feature: np.ndarray, saliency: np.ndarray, source: str, head_from: str):
    """A time x frequency feature and its saliency, side by side."""
    del head_from
    figure, axes = _figure(2, (9.0, 3.6))
    for ax, values, title, cmap in ((axes[0], feature, source, "viridis"),
                                    (axes[1], saliency, "saliency", "hot")):
        image = ax.imshow(values.T, origin="lower", aspect="auto", cmap=cmap,
                          interpolation="nearest")
        ax.set_xlabel("time frame")
        ax.set_ylabel("frequency bin")
        ax.set_title(title)
        figure.colorbar(image, ax=ax)
    return figure


def _lines_figure(feature: np.ndarray, saliency: np.ndarray, source: str, head_from: str):
    """Each channel of a 1-D feature as a line, its saliency shaded under it."""
    channels = feature.shape[-1]
    figure, axes = _figure(channels, (9.0, 1.2 + 2.0 * channels), rows=True)
    positions = np.arange(feature.shape[0])
    # A front end's 1-D output is a spectrum (e.g. Welch); a 1-D model input a raw window.
    unit = "frequency bin" if head_from else "sample"
    for c, ax in enumerate(axes):
        ax.plot(positions, feature[:, c], color="tab:blue", linewidth=1.0)
        ax.set_ylabel(source if channels == 1 else f"channel {c}")
        shade = ax.twinx()
        shade.fill_between(positions, 0.0, saliency[:, c], step="mid", color="tab:red",
                           alpha=0.35, linewidth=0)
        shade.set_ylim(0.0, 1.05)
        shade.set_ylabel("saliency", color="tab:red")
    axes[-1].set_xlabel(unit)
    return figure


# --- rankers: item influence ----------------------------------------------------------------


def _ranker_samples(version_dir, served: _Served, out_dir, per_group):
    from serving.tflite import _top_k

    outputs = served.outputs
    if "items" not in outputs or "probabilities" in outputs:
        return [], (f"not explained: item_influence explains a ranker (served outputs items "
                    f"and scores), this model serves {', '.join(sorted(outputs))}")
    ids = served.x
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        return [], (f"not explained: item_influence needs history ids [sessions, positions] "
                    f"as the model input, got {ids.dtype} of shape {list(ids.shape[1:])}")
    model = served.keras_model
    scores = _predict(model, ids).astype(np.float64)
    n_items = scores.shape[1]
    k = min(TOP_K, n_items)
    shared = min(k, outputs["scores"].shape[1])
    softmax = np.exp(scores - scores.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    why = _parity(-np.sort(-softmax, axis=1)[:, :shared], outputs["scores"][:, :shared],
                  version_dir)
    if why:
        return [], why
    top = _top_k(scores, k)
    vocabulary = _vocabulary(version_dir, n_items, top[:, 0], outputs["items"][:, 0])
    labels = served.labels
    if labels.dtype.kind not in "iu":  # raw item names: their vocabulary index
        index = {name: i for i, name in enumerate(vocabulary)}
        labels = np.array([index.get(_text(v), n_items) for v in labels])
    hits = top == labels[:, None]
    correct = hits.any(axis=1)
    chosen, note = _pick(correct, per_group, f"sessions (next item in the top {k})")
    if len(chosen) == 0:
        return [], note

    def name(item_index: int) -> str:
        return vocabulary[item_index] if 0 <= item_index < n_items else UNKNOWN_ITEM

    samples = []
    for j, i in enumerate(chosen):
        best = int(top[i, 0])
        positions, drops = item_influence(model, ids[i], best)
        # Model ids are vocabulary index + 1 (0 pads; n_items + 1 is the unknown bucket).
        items = [name(int(ids[i, t]) - 1) for t in positions]
        p = float(softmax[i, best])
        if correct[i]:
            rank = int(np.argmax(hits[i])) + 1
            caption = (f"correct: next item {name(int(labels[i]))} at rank {rank} of the "
                       f"top {k}; top-1 {name(best)} (p={p:.2f})")
        elif 0 <= labels[i] < n_items:
            caption = (f"wrong: next item {name(int(labels[i]))} not in the top {k}; top-1 "
                       f"{name(best)} (p={p:.2f})")
        else:
            caption = (f"wrong: next item outside the model's vocabulary; top-1 {name(best)} "
                       f"(p={p:.2f})")
        figure = _influence_figure(positions, items, drops, name(best))
        samples.append(_save(figure, caption, out_dir, f"item_influence_{j:02d}_session{i}.png",
                             bool(correct[i])))
    return samples, note


def item_influence(model, history_ids: np.ndarray, item_index: int) -> tuple[list, np.ndarray]:
    """``(positions, drops)``: the history positions holding an item (not padding) and, for
    each, how much the score of ``item_index`` (a column of the model's scores) drops when
    that item is replaced by the padding id."""
    history_ids = np.asarray(history_ids)
    positions = [t for t in range(len(history_ids)) if history_ids[t] != PADDING_ID]
    batch = np.repeat(history_ids[None], len(positions) + 1, axis=0)
    for row, t in enumerate(positions, start=1):
        batch[row, t] = PADDING_ID
    scores = np.asarray(model(batch, training=False), np.float64)[:, item_index]
    return positions, scores[0] - scores[1:]


def _vocabulary(version_dir: str, n_items: int, top1: np.ndarray,
                served_top1: np.ndarray) -> list[str]:
    """The item names by vocabulary index: the TFT vocabulary file among the model's assets
    with ``n_items`` lines that names the served top-1 items, else the served names of the
    indices they cover and ``#index`` for the others."""
    served_names = [_text(v) for v in served_top1]
    folder = os.path.join(version_dir, "assets")
    best, best_agreement = None, 0
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        path = os.path.join(folder, entry)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            lines = [line.decode("utf-8", "replace") for line in f.read().splitlines()]
        if len(lines) != n_items:
            continue
        agreement = sum(lines[i] == s for i, s in zip(top1, served_names, strict=True))
        if agreement > best_agreement:
            best, best_agreement = lines, agreement
    if best is not None and best_agreement >= 0.9 * len(served_names):
        return best
    names = [f"#{i}" for i in range(n_items)]
    for i, served_name in zip(top1, served_names, strict=True):
        names[int(i)] = served_name
    return names


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _influence_figure(positions: list, items: list, drops: np.ndarray, explained: str):
    """Bars of the score drops over the history positions, labelled with the items."""
    figure, (ax,) = _figure(1, (max(5.0, 1.0 + 0.6 * len(positions)), 3.8))
    if not positions:
        ax.text(0.5, 0.5, "empty history: nothing to remove", ha="center", va="center",
                transform=ax.transAxes)
    largest = max(drops, default=0.0)
    colors = ["tab:red" if d == largest and d > 0 else "tab:blue" for d in drops]
    ax.bar(range(len(positions)), drops, color=colors)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(positions)),
                  [f"{item}\n(position {t})" for item, t in zip(items, positions, strict=True)],
                  fontsize=8)
    ax.set_ylabel(f"drop in the score of {explained}")
    ax.set_xlabel("history item removed (oldest first)")
    return figure


# --- figures --------------------------------------------------------------------------------


def _figure(panels: int, size: tuple[float, float], rows: bool = False):
    """A matplotlib figure on the Agg canvas (no pyplot: no global figure state) and its
    axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1, squeeze=False)[:, 0] if rows else \
        figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


def _save(figure, caption: str, out_dir: str, file: str, correct: bool) -> Sample:
    """Titles the figure with the caption and writes it as ``out_dir/file`` (atomically)."""
    from blocks.vision.gradcam import save_png

    figure.suptitle(caption, fontsize=10, color="tab:green" if correct else "tab:red")
    figure.tight_layout()
    figure.canvas.draw()
    save_png(os.path.join(out_dir, file), np.asarray(figure.canvas.buffer_rgba())[..., :3])
    return Sample(file=file, caption=caption, correct=correct)
