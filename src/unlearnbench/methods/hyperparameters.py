"""Kinds of hyperparameters, for the annotations of a method's ``build`` signature.

The config schema of every built-in method is read from its ``build`` signature (:mod:`unlearnbench.method_schema`):
each keyword is a config key, one without a default is required, and its annotation says which values it takes.
``float`` is any number and ``int`` an integer from 1; a learning rate (``lr``, ``*_lr``) is above 0; the names
below narrow the range. Each value may also be a list of them (a grid axis). At run time they are plain numbers.
"""

from typing import Annotated

Count = Annotated[int, "an integer from 0"]
Fraction = Annotated[float, "0 < f <= 1"]
Weight = Annotated[float, "0 <= w <= 1"]
Positive = Annotated[float, "above 0"]
NonNegative = Annotated[float, "at least 0"]
Budget = Annotated[float, "a fraction 0 < b <= 1 of the training recipe's steps"]

# annotation -> the schema's definition ($defs) of one value or a grid axis of them
SCHEMA_DEFS = {
    "float": "numbers",
    "int": "positive_ints",
    "bool": "booleans",
    "Count": "non_negative_ints",
    "Fraction": "fractions",
    "Weight": "weights_01",
    "Positive": "positive_numbers",
    "NonNegative": "non_negative_numbers",
    "Budget": "budgets",
}
