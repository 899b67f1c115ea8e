"""Unlearning methods by name.

A method is one small module with a ``build`` function. Three kinds exist:

- ``finetune`` methods change the base models: ``build(ctx, **hyperparameters) -> Plan`` returns the
  optimiser and, per epoch, the phases of the shared loop (:mod:`unlearnbench.loop`); the loop does the
  rest (snapshots, cost, divergence).
- ``margins`` methods produce margins without training (``do_nothing``, ``oracle``):
  ``build(inputs, **hyperparameters) -> (margins [M, P], model_index [M])``.
- ``retrain`` methods are finetune methods that start from fresh weights instead of the base models and
  get the training recipe as hyperparameter ``recipe`` (``retrain``).

A method's ``role`` tells the tables and figures how to show it: ``unlearning`` (a run is selected from its
grid and reported), ``no_unlearning`` (the upper bound), ``oracle`` (the noise floor; costs one retraining)
and ``retrain`` (the compute-matched baseline: every grid point is reported, drawn as a line against cost).

Everything about a method is read from its entry, never from its name: which inputs its jobs get
(``needs``), how tables, figures and config checks treat it (``role``), how U-LiRA runs it (``ulira``).
Its config keys, their defaults and which are required are its ``build`` signature
(:mod:`unlearnbench.method_schema` makes the config schema of every entry from it).

Add a built-in method with one module and one line in :data:`METHODS`, then run
``python -m unlearnbench.method_docs`` (the docs tables are generated from the registry); or, without
touching the package, name ``module:function`` under the config's ``plugins`` (a finetune ``build``; see
README). This module imports no torch: the workflow reads the
registry at every parse.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import registry


@dataclass(frozen=True)
class Registered:
    target: str  # "module:function"
    kind: str = "finetune"  # or "margins"
    # extra inputs, by kind (unlearnbench.method_inputs.INPUTS: where each lies, how it loads, what it asks of the
    # config): "base_margins", "holdout_margins", "matching_oracles", "datamodel_effect"
    needs: tuple[str, ...] = ()
    role: str = "unlearning"  # or "no_unlearning", "oracle", "retrain" (see the module docstring)
    # how U-LiRA runs it on a pool model and a request: "unlearn" (the finetune loop), "pool_margins" (the pool
    # model's own margins), "retrain" (a retraining without the request), None (not available: it needs inputs per
    # request that no job makes, or is a retraining from scratch). Default: "unlearn" for a finetune method that
    # needs no inputs, else None.
    ulira: str | None = "auto"

    def __post_init__(self):
        if self.ulira == "auto":
            object.__setattr__(self, "ulira", "unlearn" if self.kind == "finetune" and not self.needs else None)


ROLES = ("no_unlearning", "oracle", "retrain", "unlearning")  # also the order of methods in tables and figures

METHODS: dict[str, Registered] = {
    "do_nothing": Registered("unlearnbench.methods.do_nothing:build", "margins", ("base_margins",), "no_unlearning",
                             ulira="pool_margins"),
    "oracle": Registered("unlearnbench.methods.oracle:build", "margins", ("holdout_margins",), "oracle",
                         ulira="retrain"),
    "retrain": Registered("unlearnbench.methods.retrain:build", "retrain", role="retrain"),
    "gradient_ascent": Registered("unlearnbench.methods.gradient_ascent:build"),
    "gradient_descent": Registered("unlearnbench.methods.gradient_descent:build"),
    "ascent_descent": Registered("unlearnbench.methods.ascent_descent:build"),
    "scrub": Registered("unlearnbench.methods.scrub:build"),
    "oracle_matching": Registered("unlearnbench.methods.oracle_matching:build", needs=("matching_oracles",)),
    "dm_matching": Registered("unlearnbench.methods.dm_matching:build", needs=("datamodel_effect",)),
    "dm_direct": Registered("unlearnbench.methods.dm_direct:build", "margins", ("base_margins", "datamodel_effect")),
    "neggrad_plus": Registered("unlearnbench.methods.neggrad_plus:build"),
    "random_labels": Registered("unlearnbench.methods.random_labels:build"),
    "salun": Registered("unlearnbench.methods.salun:build"),
    "l1_sparse": Registered("unlearnbench.methods.l1_sparse:build"),
    "ssd": Registered("unlearnbench.methods.ssd:build"),
    "fisher": Registered("unlearnbench.methods.fisher:build"),
    "bad_teacher": Registered("unlearnbench.methods.bad_teacher:build"),
    "cf_k": Registered("unlearnbench.methods.cf_k:build"),
    "eu_k": Registered("unlearnbench.methods.eu_k:build"),
}


def lookup(name: str, plugins: dict[str, str] | None = None) -> Registered:
    """Registry entry of a built-in method, or of a plug-in (``module:function``, a finetune method)."""
    if plugins and name in plugins:
        return Registered(plugins[name])
    return registry.find(METHODS, name, "method", known="built in", hint="; or add it under 'plugins'")


def load_build(entry: Registered):
    return registry.load(entry.target)


def role_of(name: str, plugins: dict[str, str] | None = None) -> str:
    """The method's role; ``unlearning`` for a name the registry does not know (a table made elsewhere)."""
    try:
        return lookup(name, plugins).role
    except ValueError:
        return "unlearning"


def with_role(names, role: str, plugins: dict[str, str] | None = None) -> list[str]:
    """The methods among ``names`` that have ``role``, in their order."""
    return [name for name in names if role_of(name, plugins) == role]
