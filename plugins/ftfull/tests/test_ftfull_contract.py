"""ftfull held to ftcore's method contract suite on the tiny model."""

from ftcore.testing.suites import MethodContract


class TestFull(MethodContract):
    method = "full"
    learning_rate = 3e-3
    bad_options = [{"freeze_layers": -1}, {"freeze_layer": 1}]
