"""Every model family an app offers on its command line (``--model``) converts to TFLite: the
families no other test converts are built here from the app's tiny preset at the smallest
size its config allows (untrained weights), exported as the pipeline exports them and
converted to float32 and int8. float32 must convert; int8 must too, unless the app lists it
as optional, and then a failure is a recorded skip with the converter's reason, never an
exception."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import suite  # noqa: F401
import tensorflow as tf

from apps import registry
from serving import tflite
from serving.export import export_core_model, split_front_end
from suite.config import replace_path

# Families converted by other tests (CI time matters: not repeated here).
CONVERTED_ELSEWHERE: dict[tuple[str, str], str] = {
    ("sensor_vibration", "wdcnn"): "tests/sensor_vibration/test_model_export.py (tiny preset)",
    ("sensor_vibration", "spectral"): "tests/sensor_vibration/test_model_export.py",
    ("sensor_vibration", "lstm"): "tests/sensor_vibration/test_model_export.py",
    ("sensor_vibration", "gru"): "tests/sensor_vibration/test_model_export.py",
    ("speech", "dscnn"): "tests/speech/test_pipeline.py (tiny preset, every variant)",
    ("speech", "kwt"): "tests/speech/test_model_export.py (float32)",
    ("speech", "crnn"): "tests/speech/test_model_export.py (float32)",
    ("clickstreams", "sasrec"): "tests/clickstreams/test_model_export.py (tiny preset)",
    ("defect_images", "cnn"): "tests/defect_images/test_pipeline.py (tiny preset)",
    ("medical_scans", "cnn"): "tests/medical_scans/test_model_export.py (tiny preset)",
}

VARIANTS = ("float32", "int8")
SAMPLES = 16  # representative inputs: enough to calibrate int8, quick to convert
N_ITEMS = 30  # the ranker's vocabulary (filled in from the data at ingestion)


@dataclass(frozen=True)
class Family:
    """A family converted here: the app's tiny preset with ``kind``, shrunk by ``small``
    (dotted config field -> value) to the smallest valid size."""

    app: str
    kind: str
    small: dict[str, Any] = field(default_factory=dict)
    build_args: tuple = ()  # after the config, e.g. the ranker's vocabulary size

    def __str__(self) -> str:
        return f"{self.app}-{self.kind}"


# The keras-hub ResNet backbone's first stage has 64 filters; 16 px is the smallest image
# size the image apps accept.
FAMILIES = (
    Family("clickstreams", "gru", {"data.max_history": 4}, (N_ITEMS,)),
    Family("defect_images", "resnet", {
        "data.classes": ["ok", "scratch", "spot"], "model.image_size": 16,
        "model.filters": [64, 64], "model.blocks": [1, 1]}),
    Family("defect_images", "cspnet", {
        "data.classes": ["ok", "scratch", "spot"], "model.image_size": 16,
        "model.blocks": [1, 1, 1]}),
    Family("medical_scans", "resnet", {
        "model.image_size": 16, "model.filters": [64, 64], "model.blocks": [1, 1]}),
)


def test_every_offered_family_is_converted_by_some_test():
    offered = {(name, kind) for name in registry.APPS for kind in registry.load(name).models}
    here = {(f.app, f.kind) for f in FAMILIES}
    assert not here & set(CONVERTED_ELSEWHERE), "converted twice"
    assert offered == here | set(CONVERTED_ELSEWHERE), (
        f"not converted by any test: {sorted(offered - here - set(CONVERTED_ELSEWHERE))}; "
        f"no longer offered: {sorted((here | set(CONVERTED_ELSEWHERE)) - offered)}")


def _representative(model, rng: np.random.Generator, n_ids: int) -> np.ndarray:
    """Inputs of the model's shape and dtype: ids below ``n_ids`` (0 pads, the last is the
    unknown-item bucket) for an integer input, intensities in [0, 1] for a float one."""
    shape = (SAMPLES, *model.input_shape[1:])
    dtype = np.dtype(model.inputs[0].dtype)
    if dtype.kind in "iu":
        return rng.integers(0, n_ids, shape).astype(dtype)
    return rng.uniform(0.0, 1.0, shape).astype(dtype)


@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_family_converts_to_float32_and_int8_or_records_why_not(family, tmp_path):
    import keras

    app = registry.load(family.app)
    config = app.with_model(app.config_class.preset("tiny"), family.kind)
    for dotted, value in family.small.items():
        config = replace_path(config, dotted, value)
    config = config.check()
    spec = app.spec(config)
    keras.utils.set_random_seed(0)
    model = importlib.import_module(f"apps.{family.app}.model").build_model(
        config, *family.build_args)
    x = _representative(model, np.random.default_rng(0), N_ITEMS + 2)
    if spec.tflite.head_from:
        front_end, model = split_front_end(model, spec.tflite.head_from)
        x = front_end.predict(x, verbose=0)
    optional = spec.tflite.optional_variants

    saved = export_core_model(model, str(tmp_path / "saved_model"))
    paths, skipped = tflite.convert_variants(saved, str(tmp_path / "tflite"), x,
                                             variants=VARIANTS, optional=optional)

    assert "float32" in paths and "float32" not in skipped, skipped
    interpreter = tf.lite.Interpreter(model_path=paths["float32"])
    (inp,) = interpreter.get_input_details()
    assert tuple(inp["shape"][1:]) == tuple(model.input_shape[1:])
    assert np.dtype(inp["dtype"]) == x.dtype
    np.testing.assert_allclose(tflite.run_tflite(paths["float32"], x[:4], batch_size=4),
                               model(x[:4], training=False).numpy(), atol=1e-4)

    if "int8" not in optional:
        assert "int8" in paths, f"int8 is not optional for {family.app}: {skipped}"
    if "int8" in skipped:
        assert "int8" not in paths and skipped["int8"].strip(), skipped
        print(f"{family}: int8 skipped: {skipped['int8']}")
        return
    assert set(paths) == set(VARIANTS) and os.path.getsize(paths["int8"]) > 0
    interpreter = tf.lite.Interpreter(model_path=paths["int8"])
    (inp,) = interpreter.get_input_details()
    assert tuple(inp["shape"][1:]) == tuple(model.input_shape[1:])
    # Float inputs are quantized to int8; integer inputs (ids) keep their type.
    assert np.dtype(inp["dtype"]) == (x.dtype if x.dtype.kind in "iu" else np.int8)
    out = tflite.run_tflite(paths["int8"], x[:4], batch_size=4)
    assert out.shape == (4, *model.output_shape[1:]) and np.isfinite(out).all()
