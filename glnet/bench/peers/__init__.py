"""Other libraries' point renderers, fed the points, colours and sizes glnet draws, for the comparison."""

from __future__ import annotations

from .pygfx_points import PygfxPoints, PygfxUnavailableError, probe
from .vispy_markers import VispyMarkers, markers_data

__all__ = ["PygfxPoints", "PygfxUnavailableError", "VispyMarkers", "markers_data", "probe"]
