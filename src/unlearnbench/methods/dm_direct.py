"""DM-direct: no model update; predicted margins = base margins − multiplier · Σ_{i∈F} β_i(x).

A diagnostic of attribution quality: if the datamodels were perfect, this would be an oracle.
"""


def build(inputs: dict, multiplier: float = 1.0):
    base = inputs["base_margins"]
    effect = inputs["datamodel_effect"]["margin_effect"]  # [P]
    return base["margins"] - multiplier * effect[None, :], base["model_index"]
