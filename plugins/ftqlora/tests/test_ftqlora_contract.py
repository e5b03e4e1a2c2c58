"""ftqlora held to ftcore's method contract suite: a real 4-bit NF4 base through bitsandbytes' CPU backend."""

from ftcore.testing.suites import MethodContract


class TestQLora(MethodContract):
    method = "qlora"
    options = {"r": 8, "alpha": 16}
    bad_options = [{"r": 0}, {"quant_type": "int3"}, {"double_quantization": True}]
