"""The energy and CO2 of a block of work (CodeCarbon, offline): positive, growing with the
work's length, converted with the configured grid, and labelled measured or estimated."""

import time

import pytest

from suite import energy
from suite.config import EnergyConfig


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def _measured(seconds: float, config: EnergyConfig) -> dict:
    with energy.measure(config) as used:
        assert used == {}  # filled on exit
        _busy(seconds)
    return used


def test_energy_grows_with_the_work_and_uses_the_configured_grid():
    config = EnergyConfig(grid_g_co2_per_kwh=500.0, measure_power_secs=0.2)
    short, long = _measured(0.5, config), _measured(3.0, config)
    for used in (short, long):
        assert used["energy_kwh"] > 0 and used["cpu_kwh"] > 0
        assert used["energy_kwh"] == pytest.approx(
            used["cpu_kwh"] + used["gpu_kwh"] + used["ram_kwh"], rel=1e-6)
        # kg CO2eq = kWh x g/kWh / 1000, with the forced grid intensity.
        assert used["co2_kg"] == pytest.approx(used["energy_kwh"] * 0.5, rel=1e-3)
        assert used["method"].startswith(("measured", "estimate"))
        assert used["country"] == "DEU" and used["grid_g_co2_per_kwh"] == 500.0
    assert long["duration_s"] > 3 * short["duration_s"]
    # Six times the busy CPU time: well over twice the CPU energy.
    assert long["cpu_kwh"] > 2 * short["cpu_kwh"]
    line = energy.summary_line(long)
    assert "Wh" in line and "g CO2eq (DEU grid, 500 g/kWh)" in line


def test_country_grid_intensity_is_used_without_a_forced_one():
    used = _measured(0.3, EnergyConfig(country_iso_code="FRA", measure_power_secs=0.2))
    germany = _measured(0.3, EnergyConfig(country_iso_code="DEU", measure_power_secs=0.2))
    # France's grid (nuclear) is far less carbon-intensive than Germany's.
    assert 0 < used["grid_g_co2_per_kwh"] < germany["grid_g_co2_per_kwh"]
