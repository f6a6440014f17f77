"""Distillation (serving.distill): the targets a student learns from, and a student that
learns a teacher it has never seen the weights of, from its answers on mixed inputs."""

from __future__ import annotations

import numpy as np
import pytest

import suite  # noqa: F401
import keras

from serving import distill


def _fixed(probabilities: np.ndarray) -> keras.Model:
    """A teacher that answers ``probabilities`` row i for the input row i (softmax of its
    log)."""
    inputs = keras.Input((probabilities.shape[1],))
    return keras.Model(inputs, keras.layers.Softmax()(inputs))


def test_targets_mix_the_tempered_teacher_with_the_labels():
    teacher = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]], np.float32)
    x = np.log(teacher)

    def targets(labels, alpha, temperature, probabilities=True, model=None):
        distiller = distill._Distiller(model or _fixed(teacher), _fixed(teacher) if model is
                                       None else model, probabilities=probabilities,
                                       alpha=alpha, temperature=temperature, mixup=0.0)
        _, target = distiller._inputs_and_targets(x, np.array(labels), mix=False)
        return np.asarray(target)

    # Row 0: half the teacher, half the one-hot label; row 1 has no label (-1, e.g. an item
    # out of the vocabulary), so it keeps the teacher's distribution alone.
    np.testing.assert_allclose(targets([1, -1], 0.5, 1.0),
                               [[0.25, 0.625, 0.125], [0.1, 0.1, 0.8]], atol=1e-6)
    # Temperature 2 on probabilities: p ** (1 / 2), renormalised.
    root = np.sqrt(teacher[0])
    np.testing.assert_allclose(targets([-1, -1], 0.5, 2.0)[0], root / root.sum(), atol=1e-6)
    # A ranker's scores are logits: softmax(scores / T).
    scores = keras.Sequential([keras.Input((3,)), keras.layers.Identity()])
    expected = np.exp(x[0] / 2) / np.exp(x[0] / 2).sum()
    np.testing.assert_allclose(targets([-1, -1], 1.0, 2.0, False, scores)[0], expected,
                               atol=1e-6)


def _teacher(n_features: int, n_classes: int) -> keras.Model:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((n_features,))
    hidden = keras.layers.Dense(64, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(hidden))


def _student(n_features: int, n_classes: int) -> keras.Model:
    inputs = keras.Input((n_features,))
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(inputs))


@pytest.mark.parametrize("with_labels", [True, False])
def test_a_student_learns_the_teachers_decisions(with_labels):
    rng = np.random.default_rng(0)
    teacher = _teacher(8, 4)
    # Scale the teacher's logits up so that its decisions are sharp.
    teacher.layers[-1].set_weights([w * 4 for w in teacher.layers[-1].get_weights()])
    x = rng.normal(size=(3000, 8)).astype(np.float32)
    outputs = teacher.predict(x, verbose=0)
    labels = outputs.argmax(-1) if with_labels else None
    student = _student(8, 4)
    before = float(np.mean(student.predict(x, verbose=0).argmax(-1) == outputs.argmax(-1)))
    figures = distill.distill(student, teacher, x, labels, epochs=30, learning_rate=1e-2)
    fresh = rng.normal(size=(1000, 8)).astype(np.float32)
    agreement = float(np.mean(student.predict(fresh, verbose=0).argmax(-1)
                              == teacher.predict(fresh, verbose=0).argmax(-1)))
    assert agreement >= 0.85 > before + 0.2, (agreement, before)
    assert figures["validation_examples"] == 300 and figures["examples"] == 2700
    assert 1 <= figures["best_epoch"] <= figures["epochs_run"] <= 30
    assert figures["validation_agreement"] >= 0.85


def test_bad_settings_and_student_names_are_refused_naming_the_field():
    x = np.zeros((4, 8), np.float32)
    teacher = _teacher(8, 4)
    with pytest.raises(ValueError, match="edge.distill_alpha"):
        distill.distill(_student(8, 4), teacher, x, None, alpha=1.5)
    with pytest.raises(ValueError, match="edge.distill_temperature"):
        distill.distill(_student(8, 4), teacher, x, None, temperature=0)
    with pytest.raises(ValueError, match="edge.distill_mixup"):
        distill.distill(_student(8, 4), teacher, x, None, mixup=-1)
    with pytest.raises(ValueError, match="module:function"):
        distill.student_builder("apps.nowhere:student")
