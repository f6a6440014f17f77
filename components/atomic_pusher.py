"""Pusher executor that publishes a TF Serving version directory atomically.

TFX's stock filesystem push copies files straight into ``<base>/<version>/``, so a model
server polling the base path can see a half-copied version, and two pushes in the same
second collide. Here the model is copied into a hidden staging folder beside the versions
(TF Serving ignores names that are not numbers) and renamed into place in one step. The
version is a unix timestamp, raised above the newest existing version when needed so that
"latest" always means the last push. A model identical to the newest pushed version is not
pushed again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time

from absl import logging
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.run_report import ADDED_AFTER_PUSH
from serving.versions import list_versions


def model_fingerprint(model_dir: str) -> str:
    """A hash of every file of a SavedModel directory (names and contents), leaving out
    what the run report adds after a push."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(model_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, model_dir).replace(os.sep, "/")
            if relative.startswith(ADDED_AFTER_PUSH):
                continue
            digest.update(relative.encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def push_atomically(model_dir: str, base_dir: str) -> tuple[str, bool]:
    """Publishes ``model_dir`` as a new version under ``base_dir``.

    Returns (version, pushed): pushed is False when the newest version already holds an
    identical model, whose version is returned instead.
    """
    existing = list_versions(base_dir)
    if existing:
        latest = str(existing[-1])
        if model_fingerprint(os.path.join(base_dir, latest)) == model_fingerprint(model_dir):
            return latest, False
    version = max(int(time.time()), existing[-1] + 1 if existing else 0)
    os.makedirs(base_dir, exist_ok=True)
    staging = os.path.join(base_dir, f".staging-{version}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(model_dir, staging)
        os.rename(staging, os.path.join(base_dir, str(version)))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(version), True


class AtomicPushExecutor(pusher_executor.Executor):
    """TFX Pusher executor for filesystem destinations with atomic, monotonic versions."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 (TFX API)
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise ValueError("the atomic pusher needs a filesystem push destination, got "
                             f"{destination.WhichOneof('destination')}")
        base_dir = destination.filesystem.base_directory
        model_path = self.GetModelPath(input_dict)
        version, pushed = push_atomically(model_path, base_dir)
        logging.info("Model %s to %s (version %s).",
                     "pushed" if pushed else "already served", base_dir, version)
        shutil.copytree(model_path, model_push.uri, dirs_exist_ok=True)
        self._MarkPushed(model_push, pushed_destination=os.path.join(base_dir, version),
                         pushed_version=version)
