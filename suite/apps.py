"""The apps of the suite, listed without importing TensorFlow."""

from __future__ import annotations

APPS: dict[str, tuple[str, str]] = {
    # command: (module with main(), what it is for)
    "sensor-vibration": (
        "apps.sensor_vibration.cli",
        "bearing faults from accelerometer signals (CWRU .mat, CSV): 1D CNN / LSTM / GRU",
    ),
    "medical-scans": (
        "apps.medical_scans.cli",
        "chest X-ray (two-class scan) classification from JPEG/PNG folders, .npz, DICOM: "
        "CNN / ResNet, Grad-CAM",
    ),
    "clickstreams": (
        "apps.clickstreams.cli",
        "next-item recommendation from session / interaction logs: SASRec Transformer / GRU",
    ),
}
