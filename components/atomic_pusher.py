"""Pusher executor that publishes a TF Serving version directory atomically
(``serving.versions.push_atomically``: staged beside the versions and renamed into place,
a monotonic unix-timestamp version, nothing published when the newest version holds the
same model, leaving out what the run report adds after a push)."""

from __future__ import annotations

import os

from absl import logging
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.run_report import ADDED_AFTER_PUSH
from serving.versions import push_atomically
from suite import files


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
        version, pushed = push_atomically(model_path, base_dir, leave_out=ADDED_AFTER_PUSH)
        logging.info("Model %s to %s (version %s).",
                     "pushed" if pushed else "already served", base_dir, version)
        files.copy_tree(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=os.path.join(base_dir, version),
                         pushed_version=version)
