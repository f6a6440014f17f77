"""Energy and CO2 of a training run, measured with CodeCarbon in offline mode.

CodeCarbon reads the hardware's power counters where there are some (Intel RAPL for the
CPU, NVML for NVIDIA GPUs) and converts energy to CO2 with the configured country's grid
intensity (or a forced one), never calling a network service. Where the machine gives no
CPU power counter (e.g. a container without /sys/class/powercap), it falls back to its
CPU-load model: the CPU's power is its TDP (from CodeCarbon's table of CPU models, or a
default) times the share of CPU time the tracked process used, sampled every
``measure_power_secs``; RAM is a fixed power per installed GiB. That figure is an estimate,
and the result says so in ``method``.
"""

from __future__ import annotations

import contextlib
import logging

from suite.config import EnergyConfig

# The entry of a model export's metadata (``assets.extra/suite_metadata.json``) that holds
# the energy and CO2 of its training.
METADATA_KEY = "training_energy"
# CodeCarbon's CPU tracking modes that read a power counter rather than estimate one.
_MEASURED_CPU_MODES = {"intel_rapl", "intel_power_gadget", "apple_powermetrics", "rapl"}


def _tracker(config: EnergyConfig):
    from codecarbon import OfflineEmissionsTracker

    options = {}
    if config.grid_g_co2_per_kwh > 0:
        options["force_carbon_intensity_g_co2e_kwh"] = config.grid_g_co2_per_kwh
    # "process": the CPU load of this process, not of whatever else shares the machine.
    return OfflineEmissionsTracker(
        country_iso_code=config.country_iso_code, measure_power_secs=config.measure_power_secs,
        tracking_mode="process", save_to_file=False, log_level="error",
        allow_multiple_runs=True, project_name="industrial-dl-suite", **options)


def _method(tracker) -> str:
    cpu_modes = {getattr(h, "_mode", None) for h in tracker._hardware
                 if type(h).__name__ == "CPU"}
    gpus = any(type(h).__name__ == "GPU" for h in tracker._hardware)
    cpu = ("measured: CPU power counters (RAPL)" if cpu_modes & _MEASURED_CPU_MODES
           else "estimate: CPU time x TDP (no CPU power counter readable), RAM by size")
    return cpu + ("; GPU measured with NVML" if gpus else "")


@contextlib.contextmanager
def measure(config: EnergyConfig | None = None):
    """Measures the energy of the ``with`` block; yields a dict that is filled on exit with
    ``energy_kwh``, ``co2_kg``, ``duration_s``, ``cpu_kwh``, ``gpu_kwh``, ``ram_kwh``,
    ``method`` (measured or estimate, and how), ``country`` and ``grid_g_co2_per_kwh``."""
    config = config or EnergyConfig()
    logger = logging.getLogger("codecarbon")
    logger.disabled = True  # its setup lines (and a warning about parallel trackers)
    try:
        tracker = _tracker(config)
        tracker.start()
    finally:
        logger.disabled = False
    logger.setLevel(logging.ERROR)
    result: dict = {}
    try:
        yield result
    finally:
        tracker.stop()
        data = tracker.final_emissions_data
        kwh = float(data.energy_consumed)
        result.update(
            energy_kwh=kwh, co2_kg=float(data.emissions),
            duration_s=float(data.duration), cpu_kwh=float(data.cpu_energy),
            gpu_kwh=float(data.gpu_energy), ram_kwh=float(data.ram_energy),
            method=_method(tracker), country=config.country_iso_code,
            grid_g_co2_per_kwh=(config.grid_g_co2_per_kwh
                                or (1000.0 * float(data.emissions) / kwh if kwh else 0.0)))


def summary_line(energy: dict) -> str:
    """One line for a run summary."""
    return (f"{energy['energy_kwh'] * 1000:.3g} Wh, {energy['co2_kg'] * 1000:.3g} g CO2eq "
            f"({energy['country']} grid, {energy['grid_g_co2_per_kwh']:.0f} g/kWh) in "
            f"{energy['duration_s']:.0f} s; {energy['method']}")
