"""The decision of the medical-scans model: threshold rules, the refer band and the
out-of-distribution check in the served outputs, the EM prevalence estimate, and site
calibration writing a new model version (through the ``calibrate`` command)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import suite  # noqa: F401
import tensorflow as tf

from apps.medical_scans import cli, data, decision as decisions
from apps.medical_scans.app import APP
from apps.medical_scans.calibrate import calibrate
from apps.medical_scans.config import DataConfig, MedicalConfig
from blocks.mahalanobis import Gaussian
from blocks.vision.dicom import encode_png, read_dicom
from serving.export import load_metadata
from serving.versions import list_versions, push_atomically
from suite.config import replace_path
from suite.metrics import decision_threshold, roc_auc, specificity_at_sensitivity
from tests import harness

# Negatives 0.1 0.2 0.3 0.6, positives 0.4 0.5 0.7 0.8 0.9 (worked by hand below).
LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 1]
SCORES = [0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.8, 0.9]


def test_threshold_rules_on_hand_computed_scores():
    # Threshold 0.35: sensitivity 5/5, specificity 3/4 (J 0.75); 0.45: 4/5, 3/4 (0.55);
    # 0.55: 3/5, 3/4; 0.65: 3/5, 4/4 (0.6).
    assert decision_threshold(LABELS, SCORES, "youden") == pytest.approx(0.35)
    assert decision_threshold(LABELS, SCORES, "sensitivity", 0.8) == pytest.approx(0.45)
    # The margin asks for more on validation: 0.75 + 0.1 needs all five positives.
    assert decision_threshold(LABELS, SCORES, "sensitivity", 0.75, 0.1) == pytest.approx(0.35)
    assert decision_threshold(LABELS, SCORES, "sensitivity", 0.6) == pytest.approx(0.65)
    assert decision_threshold(LABELS, SCORES, "specificity", 1.0) == pytest.approx(0.65)
    assert decision_threshold(LABELS, SCORES, "specificity", 0.7) == pytest.approx(0.35)
    # Youden ties go to the higher threshold (fewer false positives): J is 0.5 both at 0.15
    # (sensitivity 2/2, specificity 1/2) and at 0.35 (1/2, 2/2).
    assert decision_threshold([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], "youden") == \
        pytest.approx(0.35)
    assert specificity_at_sensitivity(LABELS, SCORES, 0.8) == pytest.approx(0.75)
    assert specificity_at_sensitivity(LABELS, SCORES, 0.6) == pytest.approx(1.0)
    # Tied scores move together: no threshold separates the 0.5s.
    assert decision_threshold([0, 1, 0, 1], [0.5, 0.5, 0.1, 0.9], "specificity", 1.0) == \
        pytest.approx(0.7)
    with pytest.raises(ValueError, match="both classes"):
        decision_threshold([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="threshold rule"):
        decision_threshold(LABELS, SCORES, "accuracy")


def _scores(rng, labels, separation=1.5):
    """Positive probabilities calibrated at prevalence 0.5: x ~ N(+-separation, 1), the
    posterior of N(+s, 1) against N(-s, 1) with equal priors is sigmoid(2 s x)."""
    x = rng.normal(np.where(labels, separation, -separation), 1.0)
    return decisions.sigmoid(2 * separation * x)


def test_em_recovers_a_known_prevalence_and_moves_the_threshold():
    rng = np.random.default_rng(0)
    for prevalence in (0.1, 0.3, 0.8):
        site = rng.random(4000) < prevalence
        estimate = decisions.em_prevalence(_scores(rng, site), 0.5)
        assert estimate == pytest.approx(prevalence, abs=0.02)
    # Overconfident scores (logit x 3): the validation calibration undoes it first.
    validation = rng.random(2000) < 0.5
    raw = decisions.sigmoid(3 * decisions.logit(_scores(rng, validation)))
    calibration = decisions.fit_calibration(validation, raw)
    assert calibration["a"] == pytest.approx(1 / 3, rel=0.1)
    site = rng.random(4000) < 0.2
    site_raw = decisions.sigmoid(3 * decisions.logit(_scores(rng, site)))
    estimate = decisions.em_prevalence(decisions.posterior(site_raw, calibration),
                                       calibration["prevalence"])
    assert estimate == pytest.approx(0.2, abs=0.03)
    # At prevalence 0.2 the posterior is 0.5 where the balanced one is 0.8: odds 4.
    exact = {"a": 1.0, "b": 0.0, "prevalence": 0.5}
    assert decisions.prevalence_threshold(exact, 0.2) == pytest.approx(0.8)
    # The moved threshold makes fewer errors at the site than the balanced one.
    errors = [np.mean((site_raw >= t) != site) for t in
              (0.5, decisions.prevalence_threshold(calibration, estimate))]
    assert errors[1] < errors[0]


def test_served_outputs_refer_band_and_out_of_distribution():
    low, high = decisions.refer_band(0.3, 1.0)
    assert decisions.logit(high) - decisions.logit(0.3) == pytest.approx(1.0)
    assert decisions.logit(0.3) - decisions.logit(low) == pytest.approx(1.0)
    ood = decisions.OodModel(np.array([[0.0, 0.0], [4.0, 4.0]]),
                             Gaussian(np.zeros(2), np.array([1.0, 2.0]), np.eye(2)), 2.0)
    decision = decisions.Decision(0.3, low, high, ood)
    positive = np.array([0.05, 0.2, 0.35, 0.9, 0.9], np.float32)
    features = np.array([[0, 0], [0, 1], [4, 5], [4, 4], [10, 0]], np.float32)
    # Squared distances to the nearest mean with std (1, 2): 0, 0.25, 0.25, 0, min(100 + 0,
    # 36 + 4) = 40.
    post = decisions.served_outputs(("NORMAL", "PNEUMONIA"), decision)
    out = {k: v.numpy() for k, v in post(
        tf.constant(np.stack([1 - positive, positive], axis=1)),
        tf.constant(features)).items()}
    np.testing.assert_allclose(out["ood_score"], [0, 0.25, 0.25, 0, 40], rtol=1e-5)
    assert out["class_ids"].tolist() == [0, 0, 1, 1, 1]
    # 0.2 and 0.35 lie within a logit of 0.3 (band [0.136, 0.538)); the last is far away.
    assert [d.decode() for d in out["decision"]] == [
        "NORMAL", decisions.REFER_UNCERTAIN, decisions.REFER_UNCERTAIN, "PNEUMONIA",
        decisions.REFER_UNLIKE]
    assert out["refer"].tolist() == [0, 1, 1, 0, 1]
    assert ((out["decision_score"] >= 0.5) == (positive >= 0.3)).all()
    np.testing.assert_allclose(out["threshold"], 0.3)
    np.testing.assert_allclose(out["scores"], [0.95, 0.8, 0.35, 0.9, 0.9], atol=1e-6)


def _non_chest_images(tmp_path, size=40) -> list[bytes]:
    """Blank, noise, stripes, a colour photo-like gradient, and the CT and MR slices shipped
    with pydicom (converted with the modality check off)."""
    from pydicom.data import get_testdata_file

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = [np.full((size, size), v, np.uint8) for v in (0, 128, 255)]
    images += [rng.integers(0, 256, (size, size), dtype=np.uint8) for _ in range(3)]
    images += [((np.sin(2 * np.pi * f * xx) + 1) * 127.5).astype(np.uint8) for f in (3, 7)]
    images.append((np.stack([xx, yy, 1 - xx], -1) * 255).astype(np.uint8))
    encoded = [encode_png(i) for i in images]
    encoded += [encode_png(read_dicom(get_testdata_file(n))[0])
                for n in ("CT_small.dcm", "MR_small.dcm")]
    return encoded


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """A tiny model trained through the pipeline's fit hook, exported and pushed to a model
    base path; the generated images it was trained on."""
    root = tmp_path_factory.mktemp("medical_decision")
    config = MedicalConfig.preset("tiny")
    # A few dozen training images estimate the features' covariance poorly: shrink it more.
    for path, value in (("train.epochs", 8), ("decision.refer_band", 0.5),
                        ("decision.ood_shrinkage", 0.5)):
        config = replace_path(config, path, value)
    images = data.generate_synthetic(str(root / "images"), "folders", n_per_class=24, size=40)
    ready = harness.prepare(APP, config, images, root)
    export_dir, _ = harness.check_export(APP, config, ready, root / "export")
    base = str(root / "models" / "medical_scans")
    version, _ = push_atomically(export_dir, base)
    return os.path.join(base, version), images, root


def _serve(version_dir: str, encoded: list[bytes]) -> dict:
    serve = tf.saved_model.load(version_dir).signatures["serving_default"]
    examples = tf.constant([data.image_example(i) for i in encoded])
    return {k: v.numpy() for k, v in serve(examples=examples).items()}


def _chest(images: str, cls: str) -> list[bytes]:
    folder = os.path.join(images, cls)
    return [data.load_image_bytes(os.path.join(folder, f), DataConfig())
            for f in sorted(os.listdir(folder))]


def test_ood_score_separates_non_chest_images_from_chest_images(pushed, tmp_path):
    version_dir, images, _ = pushed
    metadata = load_metadata(version_dir)
    chest = _chest(images, "NORMAL") + _chest(images, "PNEUMONIA")
    other = _non_chest_images(tmp_path)
    served = _serve(version_dir, chest + other)
    is_other = np.r_[np.zeros(len(chest)), np.ones(len(other))]
    assert roc_auc(is_other, served["ood_score"]) > 0.95
    unlike = [d.decode() == decisions.REFER_UNLIKE for d in served["decision"]]
    caught = np.mean(np.asarray(unlike)[is_other == 1])
    referred_chest = np.mean(np.asarray(unlike)[is_other == 0])
    # A limit set on a handful of validation images of a tiny model refers some chest
    # images too; the benchmark measures the rate on real validation splits.
    assert caught >= 0.8 and referred_chest <= 0.25, (caught, referred_chest)
    assert all(served["refer"][np.asarray(unlike)] == 1)
    assert metadata["ood_limit"] > 0 and len(metadata["decision_details"]) == 2


def test_calibrate_writes_a_new_complete_version_with_the_site_threshold(pushed, tmp_path):
    version_dir, images, _ = pushed
    base = os.path.dirname(version_dir)
    before = load_metadata(version_dir)
    # A site with few pneumonia scans: 24 normal, 4 pneumonia images, unlabelled.
    site = _chest(images, "NORMAL") + _chest(images, "PNEUMONIA")[:4]
    result = calibrate(version_dir, site)
    assert result.version_dir != version_dir and os.path.dirname(result.version_dir) == base
    assert [str(v) for v in list_versions(base)][-1] == os.path.basename(result.version_dir)
    for part in harness.VERSION_FILES:
        assert os.path.exists(os.path.join(result.version_dir, part)), part
    after = load_metadata(result.version_dir)
    assert after["threshold"] == pytest.approx(result.threshold)
    assert after["site_calibration"]["from_version"] == os.path.basename(version_dir)
    assert after["decision_rule"]["rule"] == "site_prevalence"
    assert 0.0 < after["site_calibration"]["prevalence"] < 0.4  # 4 of 28 are positive
    assert after["config"] == before["config"]
    # The new version decides at the new threshold; the old one is untouched.
    served = _serve(result.version_dir, site)
    positive = served["probabilities"][:, 1]
    np.testing.assert_allclose(served["threshold"], result.threshold, rtol=1e-6)
    assert served["class_ids"].tolist() == (positive >= np.float32(result.threshold)
                                            ).astype(int).tolist()
    low, high = after["refer_band"]
    assert low < result.threshold < high
    assert decisions.logit(high) - decisions.logit(result.threshold) == pytest.approx(0.5)
    old = _serve(version_dir, site)
    np.testing.assert_allclose(old["threshold"], before["threshold"], rtol=1e-6)
    np.testing.assert_allclose(old["probabilities"], served["probabilities"], atol=1e-6)


def test_calibrate_command_with_labelled_site_scans(pushed, tmp_path, capsys):
    version_dir, images, _ = pushed
    base = os.path.dirname(version_dir)
    site = tmp_path / "site"
    for cls in ("NORMAL", "PNEUMONIA"):
        (site / cls).mkdir(parents=True)
        for name in sorted(os.listdir(os.path.join(images, cls)))[:6]:
            os.symlink(os.path.join(images, cls, name), site / cls / name)
    (site / "NORMAL" / "notes.txt").write_text("not an image")  # ignored
    code = cli.main(["calibrate", "--model", base, "--images", str(site), "--out",
                     str(tmp_path / "site_models")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "site scans: 12 (labelled)" in out and "labelled site scans" in out
    new = os.path.join(str(tmp_path / "site_models"), str(list_versions(
        str(tmp_path / "site_models"))[-1]))
    assert f"new version: {new}" in out
    metadata = load_metadata(new)
    assert metadata["decision_rule"]["on"].endswith("labelled site scans")
    assert metadata["site_calibration"]["labelled"] is True
    with open(os.path.join(new, "assets.extra", "suite_metadata.json")) as f:
        assert json.load(f)["threshold"] == metadata["threshold"]
    # A folder without images is refused with a one-line error naming it.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["calibrate", "--model", base, "--images", str(empty)]) == 2
    assert f"{empty}: no JPEG, PNG or DICOM files found" in capsys.readouterr().err
