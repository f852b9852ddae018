"""The training state: an explicit pytree of everything a step changes."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

__all__ = ["TrainState"]


@flax.struct.dataclass
class TrainState:
    """``step`` (number of updates applied), ``params``, ``model_state`` (non-parameter variable
    collections such as ``batch_stats``; ``{}`` when the model has none) and ``opt_state``.

    The optimizer itself is not in the state (it is code, rebuilt from the config), so the state
    is plain arrays that Orbax saves and restores into any sharding."""

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any

    @classmethod
    def create(cls, variables: dict, tx) -> "TrainState":
        variables = dict(variables)
        params = variables.pop("params")
        return cls(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                   opt_state=tx.init(params))
