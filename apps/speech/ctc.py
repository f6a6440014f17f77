"""CTC for spoken digit strings: the training loss, decoding inside the serving graph
(greedy or beam search), and the same greedy decoding in numpy (validation, TFLite edge
devices, tests).

The acoustic model returns per-frame probabilities over the ten digits and the blank, the
blank last (index 10), as TensorFlow's CTC ops expect by default. Greedy decoding takes the
most likely symbol of each frame, merges repeats and drops blanks; beam search keeps the
``beam_width`` most likely labellings (summed over their alignments).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf

from apps.speech.config import DIGITS

BLANK = len(DIGITS)  # the last symbol
_EPS = 1e-7


def ctc_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean CTC loss of digit ids [batch, max_digits] (-1 after the end) against per-frame
    logits [batch, frames, 11] (a Keras loss: y_true, y_pred)."""
    labels = tf.cast(labels, tf.int32)
    label_length = tf.reduce_sum(tf.cast(labels >= 0, tf.int32), axis=1)
    batch, frames = tf.shape(logits)[0], tf.shape(logits)[1]
    loss = tf.nn.ctc_loss(labels=tf.maximum(labels, 0), logits=tf.cast(logits, tf.float32),
                          label_length=label_length,
                          logit_length=tf.fill([batch], frames), logits_time_major=False,
                          blank_index=BLANK)
    return tf.reduce_mean(loss)


def decode(probabilities: tf.Tensor, decoder: str = "greedy", beam_width: int = 8
           ) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-frame probabilities [batch, frames, 11] -> (digit strings [batch], score
    [batch]). The score is the probability of the decoded labelling: for beam search summed
    over the alignments in the beam, for greedy the probability of its best path (a lower
    bound)."""
    log_probs = tf.math.log(tf.cast(probabilities, tf.float32) + _EPS)
    time_major = tf.transpose(log_probs, [1, 0, 2])
    batch, frames = tf.shape(log_probs)[0], tf.shape(log_probs)[1]
    lengths = tf.fill([batch], frames)
    if decoder == "beam":
        # The beam decoder takes the blank as the last class, as this model has it.
        decoded, log_probability = tf.nn.ctc_beam_search_decoder(
            time_major, lengths, beam_width=beam_width, top_paths=1)
        score = tf.exp(log_probability[:, 0])
    else:
        decoded, neg_sum = tf.nn.ctc_greedy_decoder(time_major, lengths,
                                                    merge_repeated=True, blank_index=BLANK)
        score = tf.exp(-neg_sum[:, 0])
    ids = tf.sparse.to_dense(decoded[0], default_value=-1)
    chars = tf.gather(tf.constant(list(DIGITS)), tf.maximum(ids, 0))
    chars = tf.where(ids >= 0, chars, tf.constant(""))
    digits = tf.strings.reduce_join(chars, axis=1)
    # An empty batch item decodes to no column at all; reduce_join then gives "".
    digits = tf.reshape(digits, [batch])
    return digits, score


def transcript_outputs(decoder: str = "greedy", beam_width: int = 8
                       ) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """Serving outputs of the transcriber: the decoded digit string (``digits``), its score,
    its length, and the per-frame probabilities (what the TFLite acoustic model returns)."""

    def postprocess(probabilities: tf.Tensor) -> dict[str, tf.Tensor]:
        digits, score = decode(probabilities, decoder, beam_width)
        return {"digits": digits, "score": score,
                "n_digits": tf.cast(tf.strings.length(digits), tf.int64),
                "probabilities": probabilities}

    return postprocess


def greedy_decode(probabilities: np.ndarray) -> list[str]:
    """numpy greedy CTC decoding of per-frame probabilities (or logits) [batch, frames, 11]
    (or one [frames, 11]) into digit strings: the edge device's decoder beside the TFLite
    acoustic model."""
    p = np.asarray(probabilities)
    if p.ndim == 2:
        p = p[None]
    best = p.argmax(axis=-1)
    out = []
    for row in best:
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        out.append("".join(DIGITS[s] for s in row[keep] if s != BLANK))
    return out


def ids_to_strings(ids: Sequence[Sequence[int]]) -> list[str]:
    """Digit ids (-1 after the end) -> digit strings."""
    return ["".join(DIGITS[int(i)] for i in row if i >= 0) for row in np.asarray(ids)]
