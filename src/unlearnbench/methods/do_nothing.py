"""The base model itself: the upper bound on what unlearning must remove."""


def build(inputs: dict, **_hp):
    stored = inputs["base_margins"]  # a margins store: "margins" [M, P], "model_index" [M] (+ "correct" [M, P])
    return stored["margins"], stored["model_index"], stored.get("correct")

