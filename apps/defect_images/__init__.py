"""Defect images: surface-defect classification and unsupervised anomaly detection for visual
quality control, from camera images to deployable models."""
