"""The one registry helper behind quantize handlers, prune methods and layer handlers, study
variants and zoo models: duplicates refused, types looked up through their class hierarchy."""

import pytest
from torch import nn

from effai.errors import InputError
from effai.registry import DuplicateRegistration, Registry


def test_duplicate_registration_names_the_first_one():
    r = Registry("handler")
    r.add("a", len)
    with pytest.raises(DuplicateRegistration, match=r"handler a is already registered \(builtins.len\)"):
        r.add("a", abs)
    assert r["a"] is len


def test_type_lookup_walks_the_class_hierarchy_nearest_first():
    r = Registry("layer handler", argument="layer")
    r.add(nn.Module, "module")
    r.add(nn.Conv2d, "conv")

    class MyConv(nn.Conv2d):
        pass

    assert r.lookup(MyConv) == "conv" and r.lookup(nn.ReLU) == "module"
    assert Registry("x").find(MyConv) is None


def test_missing_keys_are_one_line_input_errors():
    r = Registry("quantization handler", argument="config")
    r.add(int, "int")
    with pytest.raises(InputError, match="^config: no quantization handler for str; known: int$"):
        r.lookup(str)
    names = Registry("variant")
    names.add("int8_ptq", "...")
    with pytest.raises(InputError, match="unknown variant 'int8_qtp'; did you mean: int8_ptq"):
        names.lookup("int8_qtp")


@pytest.mark.parametrize("register", ["quantize", "prune", "variant", "zoo"])
def test_every_registry_refuses_a_duplicate(register):
    from effai import prune, quantize, zoo
    from effai.study.variants import variant

    with pytest.raises(DuplicateRegistration):
        if register == "quantize":
            quantize.register(quantize.Int8StaticConfig)(lambda m, c, t: m)
        elif register == "prune":
            prune.register_handler(prune.ChannelConfig)(lambda m, c, f: m)
        elif register == "variant":
            variant("fp32", family="baseline")(lambda ctx: None)
        else:
            zoo.register("lenet5", info=zoo.info("lenet5"))(lambda **kw: None)


def test_quantize_finds_the_handler_of_a_config_subclass():
    import torch

    from effai.quantize import WeightOnlyConfig, quantize_

    class MyWeightOnly(WeightOnlyConfig):
        pass

    m = quantize_(nn.Sequential(nn.Linear(8, 4)), MyWeightOnly(bits=4))
    assert m[0].fmt == "int4" and m(torch.zeros(1, 8)).shape == (1, 4)
