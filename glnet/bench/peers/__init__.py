"""Other libraries' point renderers, fed the points, colours and sizes glnet draws, for the comparison."""

from __future__ import annotations

from .vispy_markers import VispyMarkers, markers_data

__all__ = ["VispyMarkers", "markers_data"]
