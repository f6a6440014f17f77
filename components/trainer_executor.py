"""The suite's Trainer executor: TFX's generic one (it calls the shared ``run_fn``), then the
energy and CO2 of the training as custom properties of the Model artifact in ML Metadata.

``pipelines.trainer.train_and_export`` measures the training with CodeCarbon
(``suite.energy``) and keeps the figures in the export's metadata, which travels with the
model to the pushed version; this executor copies them onto the artifact, so that a run's
cost can be queried beside its metrics: ``training_energy_kwh``, ``training_co2_kg``,
``training_seconds`` and ``training_energy_method`` (measured, or an estimate and how).
"""

from __future__ import annotations

from tfx.components.trainer.executor import GenericExecutor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils

# MLMD custom property -> key of the measured figures.
PROPERTIES = {"training_energy_kwh": "energy_kwh", "training_co2_kg": "co2_kg",
              "training_seconds": "duration_s"}
METHOD_PROPERTY = "training_energy_method"


class EnergyRecordingExecutor(GenericExecutor):
    """GenericExecutor, plus the training's energy on the Model artifact."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 (TFX API)
        super().Do(input_dict, output_dict, exec_properties)
        from serving.export import load_metadata
        from suite.energy import METADATA_KEY

        model = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.MODEL_KEY])
        energy = load_metadata(path_utils.serving_model_path(model.uri)).get(METADATA_KEY)
        if not energy:
            return
        for name, key in PROPERTIES.items():
            model.set_float_custom_property(name, float(energy[key]))
        model.set_string_custom_property(METHOD_PROPERTY, energy["method"])
