"""ftmetrics' own ``evaluate`` metric modules, loaded by path so that they work with no network.

Each file here is a self-contained ``evaluate.Metric`` script (as the Hub's metric scripts are);
:func:`ftmetrics.compute.load_module` hands its path to ``evaluate.load``.
"""
