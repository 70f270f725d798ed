"""effai: make neural networks efficient, and prove it with measurements.

Capabilities are subpackages, imported on first use so that `import effai` is cheap and
touches no global torch state:

>>> import effai
>>> "lenet5" in effai.zoo.names()
True
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
    "compress", "data", "distill", "evaluate", "hardware", "mcu", "numerics", "profile",
    "prune", "quantize", "report", "search", "study", "train", "zoo",
)


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"effai.{name}")
    raise AttributeError(f"module 'effai' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBPACKAGES])
