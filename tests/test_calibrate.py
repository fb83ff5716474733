"""renderer="auto" by measurement: every renderer timed once on a test cloud, the fastest kept and cached."""

from __future__ import annotations

import json

import pytest

from glnet.gpu.cloud import NeuronCloud
from glnet.layout import build_layout
from glnet.render.calibrate import cache_path, measured_renderer

pytestmark = pytest.mark.gl


def _auto(gl) -> tuple[str, str]:
    """What ``renderer="auto"`` resolves to on a small cloud, and why."""
    from glnet.render.scene import SceneRenderer

    cloud = NeuronCloud(gl, build_layout([("a", (2, 3, 3))]))
    try:
        scene = SceneRenderer(gl, cloud, "auto")
        scene.close()
        return scene.renderer, scene.renderer_why
    finally:
        cloud.close()


def test_auto_measures_once_caches_and_picks_the_fastest(gl, tmp_path, monkeypatch):
    monkeypatch.setenv("GLNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GLNET_CALIBRATE", "1")
    said = []
    name, why = measured_renderer(gl, said.append)
    times = json.loads(cache_path().read_text())
    (entry,) = times.values()
    assert set(entry) == {"instanced", "compute", "torch"}
    assert name == min(entry, key=entry.get) and "measured now" in why
    assert len(said) == 1 and "measuring" in said[0]
    # a second use reads the cache: no measuring
    name2, why2 = measured_renderer(gl, said.append)
    assert (name2, len(said)) == (name, 1) and "measured earlier" in why2
    # a cache that says torch is fastest makes auto choose torch: the choice follows the figures
    key = next(iter(times))
    cache_path().write_text(json.dumps({key: {"instanced": 9.0, "compute": 5.0, "torch": 1.0}}))
    chosen, reason = _auto(gl)
    assert chosen == "torch" and "torch 1.0 ms" in reason
    assert name == "compute"  # llvmpipe: the compute rasterizer, measured (by far the fastest here)


def test_calibration_off_decides_by_name(gl, monkeypatch):
    monkeypatch.setenv("GLNET_CALIBRATE", "0")
    chosen, reason = _auto(gl)
    assert chosen == "compute" and "name" in reason
