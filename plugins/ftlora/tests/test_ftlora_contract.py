"""ftlora held to ftcore's method contract suite on the tiny model."""

from ftcore.testing.suites import MethodContract


class TestLora(MethodContract):
    method = "lora"
    options = {"r": 8, "alpha": 16}
    bad_options = [{"r": 0}, {"rank": 8}, {"dropout": 1.5}]
