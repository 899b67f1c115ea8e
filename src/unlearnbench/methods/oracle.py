"""A perfect unlearner: held-out oracles (retrained on train minus F, never scored against).

Its KLOM against the scored oracles is the noise floor of the benchmark.
"""


def build(inputs: dict, **_hp):
    stored = inputs["holdout_margins"]  # a margins store: "margins" [M, P], "model_index" [M] (+ "correct" [M, P])
    return stored["margins"], stored["model_index"], stored.get("correct")

