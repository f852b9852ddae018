"""Flax Linen models, one file per family, found by name: ``get_model(config.model.name)``.

A model module registers its class with ``@register_model("name")``; :func:`get_model` imports the
modules of this package on a miss, so a new family needs no edit here.
"""

from seisjax.registry import MODELS, get_model, register_model

__all__ = ["MODELS", "get_model", "register_model"]
