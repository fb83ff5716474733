"""Explanation: a neuron's place, value and causes, the layer's distribution, the model's predictions."""

from .neuron import Inspection, coord_names, coords_of, find_layer, index_of, inspect_neuron, parse_neuron
from .predictions import Prediction, class_labels, logits_of, top_k
from .receptive import receptive_field
from .saliency import saliency

__all__ = [
    "Inspection",
    "Prediction",
    "class_labels",
    "coord_names",
    "coords_of",
    "find_layer",
    "index_of",
    "inspect_neuron",
    "logits_of",
    "parse_neuron",
    "receptive_field",
    "saliency",
    "top_k",
]
