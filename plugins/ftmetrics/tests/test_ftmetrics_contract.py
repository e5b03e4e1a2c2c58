"""ftmetrics held to ftcore's metric contract suite; expected values are worked by hand."""

from ftcore.testing.suites import MetricContract


class TestExactMatch(MetricContract):
    metric = "exact_match"
    cases = [
        (["a", "b"], ["a", "c"], {"exact_match": 0.5}),
        (["Paris", "4"], ["Paris", "4"], {"exact_match": 1.0}),
    ]


class TestRouge(MetricContract):
    metric = "rouge"
    # unigram overlap of "the cat sat" with "the cat ran": 2 of 3 each way -> F1 = 2/3;
    # bigrams: "the cat" shared of 2 each -> 1/2.
    cases = [
        (["the cat sat"], ["the cat sat"], {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}),
        (["the cat sat"], ["the cat ran"], {"rouge1": 2 / 3, "rouge2": 0.5, "rougeL": 2 / 3}),
    ]


class TestBleu(MetricContract):
    metric = "bleu"
    tolerance = 1e-4
    cases = [(["the cat sat on the mat"], ["the cat sat on the mat"], {"bleu": 100.0})]
