"""Each built-in method's config schema, read from its ``build`` signature (no second copy to drift).

A keyword of ``build`` is a config key; one without a default is required; its annotation names the values it
takes (:data:`unlearnbench.methods.hyperparameters.SCHEMA_DEFS`; a learning rate, ``lr`` or ``*_lr``, is above 0);
``**optimiser`` adds the SGD keys. A finetune method also needs its snapshot ``epochs``. What the job supplies
itself (``ctx``, ``inputs``, a retraining's ``recipe``) is no config key.

The signature is read from the module's syntax tree, not imported: the config is validated at every parse of the
workflow, which must not import torch.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
from dataclasses import dataclass

from .methods.hyperparameters import SCHEMA_DEFS

SNAPSHOT_KEY = "epochs"
SUPPLIED = {"ctx", "inputs", "recipe"}  # by the unlearning job, not the config
SGD_KEYS = ("momentum", "weight_decay", "nesterov")  # what a build's **optimiser takes (methods.base.sgd)


class _Required:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED = _Required()  # the default of a hyperparameter without one


@dataclass(frozen=True)
class Hyperparameter:
    name: str
    default: object  # REQUIRED when the signature has none
    kind: str  # the schema's $defs entry of its values

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _source(target: str) -> str:
    module_name = target.partition(":")[0]
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        raise ValueError(f"method target {target!r}: no source file for module {module_name!r}")
    return spec.origin


@functools.lru_cache(maxsize=None)
def _parse(path: str, mtime_ns: int) -> ast.Module:
    with open(path, encoding="utf-8") as fh:
        return ast.parse(fh.read(), path)


def _function(target: str) -> tuple[ast.FunctionDef, ast.Module]:
    path = _source(target)
    tree = _parse(path, os.stat(path).st_mtime_ns)
    name = target.partition(":")[2]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node, tree
    raise ValueError(f"method target {target!r}: {path} defines no top-level function {name!r}")


def _kind(name: str, annotation: ast.expr | None) -> str:
    if name in SGD_KEYS:
        return name
    if name == "lr" or name.endswith("_lr"):
        return "learning_rates"
    text = ast.unparse(annotation) if annotation is not None else ""
    if text not in SCHEMA_DEFS:
        raise ValueError(f"hyperparameter {name!r}: annotate it with one of {sorted(SCHEMA_DEFS)}, got {text!r}")
    return SCHEMA_DEFS[text]


def hyperparameters(target: str) -> tuple[list[Hyperparameter], bool]:
    """The config keys of a ``build`` function (in signature order), and whether it takes the SGD keys."""
    fn, _ = _function(target)
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [REQUIRED] * (len(positional) - len(args.defaults)) + [ast.literal_eval(d) for d in args.defaults]
    kw_defaults = [REQUIRED if d is None else ast.literal_eval(d) for d in args.kw_defaults]
    found = [
        Hyperparameter(a.arg, default, _kind(a.arg, a.annotation))
        for a, default in zip(positional + args.kwonlyargs, defaults + kw_defaults)
        if a.arg not in SUPPLIED
    ]
    return found, args.kwarg is not None


def _first_paragraph(node: ast.AST) -> str:
    return " ".join((ast.get_docstring(node) or "").strip().split("\n\n")[0].split())


def description(target: str) -> str:
    """The first paragraph of the method module's docstring, on one line."""
    return _first_paragraph(_function(target)[1])


def build_description(target: str) -> str:
    """The first paragraph of the ``build`` function's own docstring, on one line."""
    return _first_paragraph(_function(target)[0])


def method_schema(target: str, kind: str) -> dict:
    """The JSON schema of one method's config entry (``kind``: the registry's finetune, retrain or margins)."""
    params, takes_sgd_keys = hyperparameters(target)
    properties = {}
    if kind == "finetune":
        properties[SNAPSHOT_KEY] = {"$ref": "#/$defs/snapshot_epochs"}
        if takes_sgd_keys:
            properties.update({k: {"$ref": f"#/$defs/{k}"} for k in SGD_KEYS})
    properties.update({p.name: {"$ref": f"#/$defs/{p.kind}"} for p in params})
    required = [p.name for p in params if p.required] + ([SNAPSHOT_KEY] if kind == "finetune" else [])
    schema = {"type": "object" if kind != "margins" else ["object", "null"], "additionalProperties": False}
    if required:
        schema["required"] = required
    text = description(target)
    if text:
        schema["description"] = text
    schema["properties"] = properties
    return schema


def methods_schema(methods: dict) -> dict:
    """``{name: schema}`` for every entry of a method registry."""
    return {name: method_schema(entry.target, entry.kind) for name, entry in methods.items()}
