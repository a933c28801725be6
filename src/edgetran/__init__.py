"""EdgeTran: co-design of heterogeneous transformer encoders and edge devices."""

from edgetran import model, space
from edgetran.space import Architecture, DesignSpace

__version__ = "0.1.0"

__all__ = ["Architecture", "DesignSpace", "__version__", "model", "space"]
