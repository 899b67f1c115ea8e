"""DM-direct: no model update; predicted margins = base margins − multiplier · Σ_{i∈F} β_i(x).

A diagnostic of attribution quality: if the datamodels were perfect, this would be an oracle.

Its accuracy is unknown (NaN in the scores): there is no model, only predicted margins, and the argmax needs
every logit. The base models' correctness would describe the models before unlearning, and ``margin > 0``
is not argmax accuracy (see :mod:`unlearnbench.margins`), so neither is reported in its place.
"""


def build(inputs: dict, multiplier: float = 1.0):
    """Base margins − ``multiplier`` · Σ_{i∈F} β_i, no training; needs a pool or ``datamodels.import``. Predicted
    margins only, no logits: its ``accuracy`` is NaN.
    """
    base = inputs["base_margins"]
    effect = inputs["datamodel_effect"]["margin_effect"]  # [P]
    return base["margins"] - multiplier * effect[None, :], base["model_index"], None
