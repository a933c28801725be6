"""The FlexiBERT 2.0 design space: architectures, the space, its embedding, sampling, costs.

First stage of the data flow; it imports no other stage.
"""

from edgetran.space.architecture import Architecture, Layer, homogeneous
from edgetran.space.design_space import REFERENCE_SPACE, DesignSpace
from edgetran.space.named import NAMED_ARCHITECTURES, load_architecture, named_architecture
from edgetran.space.ops import REFERENCE_OPS
from edgetran.space.sampling import neighbours, random_neighbour, sample

__all__ = [
    "NAMED_ARCHITECTURES",
    "REFERENCE_OPS",
    "REFERENCE_SPACE",
    "Architecture",
    "DesignSpace",
    "Layer",
    "homogeneous",
    "load_architecture",
    "named_architecture",
    "neighbours",
    "random_neighbour",
    "sample",
]
