"""The model zoo: our own plain-PyTorch implementations of standard efficient networks.

Every ImageNet model reproduces its reference implementation's parameter count exactly
(torchvision, the SENet reference, Keras' MobileNet); the MLPerf Tiny models are ports of the
Keras references in github.com/mlcommons/tiny. See tests/test_zoo.py for the pinned numbers.

>>> import effai.zoo as zoo
>>> m = zoo.create("mobilenet_v1", width_mult=0.5, resolution=160, num_classes=10)
>>> zoo.input_shape("mobilenet_v1", resolution=160), zoo.info("mobilenet_v1").family
((3, 160, 160), 'mobilenet')
"""

from . import (  # noqa: F401
    lenet,
    mlperf_tiny,
    mobilenet_v1,
    mobilenet_v2,
    mobilenet_v3,
    resnet,
    squeezenet,
    text_transformer,
)
from .registry import ModelInfo, check_input, create, info, input_shape, names, options_for, register

__all__ = ["ModelInfo", "check_input", "create", "info", "input_shape", "names", "options_for", "register"]
