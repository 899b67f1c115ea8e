"""One convention for everything a config names: methods, data sets and models.

Each kind has one table, ``name -> entry``, of one frozen dataclass per kind (:class:`~unlearnbench.methods.Registered`,
:class:`~unlearnbench.data.DatasetSpec`, :class:`~unlearnbench.models.ModelSpec`). Every entry names its code as
``"module:function"`` (:attr:`target`), imported only when it is used: the tables themselves import no torch, so
the config checks and the workflow read them at every parse. Add a method, data set or model with its module and
one line in its table.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TypeVar

Entry = TypeVar("Entry")


def load(target: str):
    """The object a ``"module:function"`` target names (imports its module)."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def find(table: Mapping[str, Entry], name: str, what: str, known: str = "known", hint: str = "") -> Entry:
    """``table[name]``, or a ValueError naming what is known."""
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; {known}: {sorted(table)}{hint}") from None
