"""SymAE: a symmetric variational autoencoder with differentiable Fourier time shifts.

The architecture of the Earthquake-SymAE reference, in Flax Linen. A datapoint is a group
of ``ntau`` traces of ``nt`` samples (one earthquake, one HEALPix pixel of station directions):
``x (B, ntau, nt)`` with an optional ``mask (B, ntau)`` of valid traces, so that groups with fewer
traces are padded rather than dropped.

Forward pass (``SymAE.__call__``):

1. a per-trace MLP predicts each trace's delay ``s`` (samples; positive = the trace is late);
2. the traces are aligned, ``fourier_shift(x, -s)``;
3. the coherent encoder maps every aligned trace to a Gaussian (mean, log precision) and pools the
   valid traces of a datapoint as a product of Gaussians (precisions add, the mean is the
   precision-weighted mean): symmetric in the traces, so the code is what they have in common;
4. the nuisance encoder maps every aligned trace to its own Gaussian (mean, log-variance);
5. codes are sampled (reparameterisation, rng stream ``"sample"``) when ``train=True``, else means;
6. the decoder maps ``[c; n_i]`` to an aligned trace, which is delayed back by ``+s`` and compared
   with the input by :func:`symae_loss`.

Shapes for ``nt = 192`` (any multiple of 16 works): per trace, encoders run
Conv(k50, 1->5), Conv(k20, 5->10), MeanPool(4), Conv(k20, 10->20), Conv(k5, 20->50), MeanPool(4),
flatten (12 x 50 = 600), Dense(600->p), then two Dense(p->p) heads, as the reference has them; the
decoder runs Dense(p+q->nt), Dense(nt->nt), reshape (nt, 1), Conv(k50, 1->5), Conv(k20, 5->20),
Conv(k20, 20->20), Conv(k5, 20->50), Conv(k5, 50->1) linear. Activations: leaky ReLU (slope 0.1);
"same" padding; Flax's channels-last layout.

Shift units: the shift network's last layer (zero-initialised, so every shift starts at 0) outputs
``r`` in the reference's unit, half the window (``shift_unit = nt / 2`` samples); the shift in
samples is ``r * shift_unit``, optionally bounded as ``max_shift * tanh(r * shift_unit / max_shift)``.
The reference has no bound, and neither does the default (``max_shift = 0``); a circular shift of
more than half the window wraps around, so tasks on data with known small timing errors may set one.
The loss penalises the shifts in that same unit, so ``gamma = 100`` means what it means there.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from seisjax.errors import InputError
from seisjax.ops.fourier import fourier_shift

__all__ = [
    "TraceEncoder", "CoherentEncoder", "NuisanceEncoder", "SymAEDecoder", "ShiftNetwork", "SymAE",
    "pool_gaussians", "kl_standard_normal_logvar", "kl_standard_normal_log_precision",
    "gaussian_nll", "symae_per_datapoint", "symae_loss", "count_params",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _flat_traces(x):
    """``(..., nt)`` -> ``(N, nt)`` and the leading shape to restore."""
    return x.reshape(-1, x.shape[-1]), x.shape[:-1]


# ----------------------------------------------------------------------------- building blocks
class TraceEncoder(nn.Module):
    """Per-trace convolutional trunk ``(N, nt) -> (N, features)`` (activated, as in the reference)."""

    features: int
    leak: float = 0.1

    @nn.compact
    def __call__(self, traces):
        act = lambda h: nn.leaky_relu(h, negative_slope=self.leak)  # noqa: E731
        h = traces[..., None]
        h = act(nn.Conv(5, (50,), padding="SAME", name="conv0")(h))
        h = act(nn.Conv(10, (20,), padding="SAME", name="conv1")(h))
        h = nn.avg_pool(h, (4,), strides=(4,))
        h = act(nn.Conv(20, (20,), padding="SAME", name="conv2")(h))
        h = act(nn.Conv(50, (5,), padding="SAME", name="conv3")(h))
        h = nn.avg_pool(h, (4,), strides=(4,))
        return act(nn.Dense(self.features, name="dense")(h.reshape(h.shape[0], -1)))


class CoherentEncoder(nn.Module):
    """Per-trace Gaussian heads of the coherent code: traces ``(..., nt)`` -> ``(mean, log_precision)``,
    each ``(..., p)``. Pool them with :func:`pool_gaussians`."""

    p: int = 30
    leak: float = 0.1

    @nn.compact
    def __call__(self, traces):
        flat, lead = _flat_traces(traces)
        h = TraceEncoder(self.p, self.leak, name="trunk")(flat)
        mean = nn.Dense(self.p, name="mean")(h)
        log_precision = nn.Dense(self.p, name="log_precision")(h)
        return mean.reshape(lead + (self.p,)), log_precision.reshape(lead + (self.p,))


class NuisanceEncoder(nn.Module):
    """Per-trace Gaussian of the nuisance code: traces ``(..., nt)`` -> ``(mean, logvar)``, each
    ``(..., q)``."""

    q: int = 30
    leak: float = 0.1

    @nn.compact
    def __call__(self, traces):
        flat, lead = _flat_traces(traces)
        h = TraceEncoder(self.q, self.leak, name="trunk")(flat)
        mean = nn.Dense(self.q, name="mean")(h)
        logvar = nn.Dense(self.q, name="logvar")(h)
        return mean.reshape(lead + (self.q,)), logvar.reshape(lead + (self.q,))


class SymAEDecoder(nn.Module):
    """Codes ``(..., p + q)`` -> aligned traces ``(..., nt)`` (last layer linear)."""

    nt: int = 192
    leak: float = 0.1

    @nn.compact
    def __call__(self, codes):
        act = lambda h: nn.leaky_relu(h, negative_slope=self.leak)  # noqa: E731
        flat = codes.reshape(-1, codes.shape[-1])
        h = act(nn.Dense(self.nt, name="dense0")(flat))
        h = act(nn.Dense(self.nt, name="dense1")(h))
        h = h[..., None]
        h = act(nn.Conv(5, (50,), padding="SAME", name="conv0")(h))
        h = act(nn.Conv(20, (20,), padding="SAME", name="conv1")(h))
        h = act(nn.Conv(20, (20,), padding="SAME", name="conv2")(h))
        h = act(nn.Conv(50, (5,), padding="SAME", name="conv3")(h))
        h = nn.Conv(1, (5,), padding="SAME", name="conv4")(h)
        return h[..., 0].reshape(codes.shape[:-1] + (self.nt,))


class ShiftNetwork(nn.Module):
    """Per-trace MLP ``(..., nt) -> (...)``: nt -> hidden -> hidden -> 1, the last layer zero-initialised
    (so the initial output is exactly 0). Output in the caller's shift unit."""

    hidden: int = 192
    leak: float = 0.1

    @nn.compact
    def __call__(self, traces):
        act = lambda h: nn.leaky_relu(h, negative_slope=self.leak)  # noqa: E731
        h = act(nn.Dense(self.hidden, name="dense0")(traces))
        h = act(nn.Dense(self.hidden, name="dense1")(h))
        out = nn.Dense(1, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros, name="out")(h)
        return out[..., 0]


# ----------------------------------------------------------------------------- Gaussians
def pool_gaussians(mean, log_precision, mask=None, axis: int = -2):
    """Product of the per-trace Gaussians along ``axis`` (the traces of a datapoint).

    ``mean``, ``log_precision``: ``(..., ntau, p)`` (with the default ``axis``); ``mask``: ``(...,
    ntau)``, 1 for valid traces (None: all valid). The pooled precision is the sum of the valid
    traces' precisions and the pooled mean their precision-weighted mean, so the result does not
    depend on the order of the traces, and masked traces (whatever they hold, NaN included) have no
    effect. A datapoint without any valid trace gets the standard normal (mean 0, log precision 0).
    Computed in log space (a log-sum-exp), so large log precisions do not overflow.
    Returns ``(mean, log_precision)``, each ``(..., p)``.
    """
    axis = axis % mean.ndim
    if mask is None:
        valid = jnp.ones(mean.shape[:axis + 1], dtype=bool)
    else:
        valid = jnp.asarray(mask).astype(bool)
    valid = jnp.expand_dims(valid, tuple(range(valid.ndim, mean.ndim)))   # broadcast over the code
    any_valid = jnp.any(valid, axis=axis)
    lp = jnp.where(valid, log_precision, -jnp.inf)
    peak = jax.lax.stop_gradient(jnp.max(lp, axis=axis, keepdims=True))
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
    # double where: the masked branch must not produce inf/NaN, or its zero cotangent becomes NaN
    weights = jnp.where(valid, jnp.exp(jnp.where(valid, log_precision - peak, 0.0)), 0.0)
    total = jnp.sum(weights, axis=axis)
    safe_total = jnp.where(any_valid, total, 1.0)
    pooled_mean = jnp.sum(weights * jnp.where(valid, mean, 0.0), axis=axis) / safe_total
    pooled_log_precision = jnp.log(safe_total) + jnp.squeeze(peak, axis)
    return (jnp.where(any_valid, pooled_mean, 0.0), jnp.where(any_valid, pooled_log_precision, 0.0))


def kl_standard_normal_logvar(mean, logvar):
    """KL( N(mean, exp(logvar)) || N(0, I) ), summed over the last axis: ``(..., d) -> (...)``."""
    return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)


def kl_standard_normal_log_precision(mean, log_precision):
    """KL( N(mean, 1 / exp(log_precision)) || N(0, I) ), summed over the last axis."""
    return kl_standard_normal_logvar(mean, -log_precision)


def gaussian_nll(x, mean, logvar):
    """Elementwise negative log-density of ``x`` under N(mean, exp(logvar)) (with the 2 pi constant)."""
    return 0.5 * (_LOG_2PI + logvar + jnp.square(x - mean) * jnp.exp(-logvar))


# ----------------------------------------------------------------------------- the model
class SymAE(nn.Module):
    """Symmetric VAE with a time-shift network (see the module docstring).

    Attributes: ``nt`` samples per trace (a multiple of 16; the reference's 192); ``p``, ``q`` the
    sizes of the coherent and nuisance codes; ``leak`` the leaky-ReLU slope; ``use_shifts`` (False:
    the plain SymVAE, all shifts 0); ``shift_unit`` samples per unit of the shift network's output
    (0: ``nt / 2``, the reference); ``max_shift`` a tanh bound on the shifts in samples (0: none);
    ``decoder_logvar_init`` the initial decoder log-variance (the reference's 1.0);
    ``sample_coherent`` whether training also samples the pooled coherent code (as the reference
    does) or uses its mean.

    Methods for ``model.apply(variables, ..., method=...)``: ``predict_shifts``, ``align``,
    ``encode_coherent``, ``encode_nuisance``, ``decode``.
    """

    nt: int = 192
    p: int = 30
    q: int = 30
    leak: float = 0.1
    use_shifts: bool = True
    shift_unit: float = 0.0
    max_shift: float = 0.0
    decoder_logvar_init: float = 1.0
    sample_coherent: bool = True

    def setup(self):
        if self.nt <= 0 or self.nt % 16:
            raise InputError(f"symae: nt = {self.nt} must be a positive multiple of 16 (two mean-pools of 4)")
        if self.max_shift < 0 or self.shift_unit < 0:
            raise InputError(f"symae: shift_unit ({self.shift_unit}) and max_shift ({self.max_shift}) "
                             "must be >= 0 (0 = default / no bound)")
        self.coherent_encoder = CoherentEncoder(self.p, self.leak)
        self.nuisance_encoder = NuisanceEncoder(self.q, self.leak)
        self.decoder = SymAEDecoder(self.nt, self.leak)
        if self.use_shifts:
            self.shift_network = ShiftNetwork(self.nt, self.leak)
        self.decoder_logvar = self.param("decoder_logvar", nn.initializers.constant(self.decoder_logvar_init), ())

    @property
    def samples_per_shift_unit(self) -> float:
        return float(self.shift_unit) if self.shift_unit > 0 else self.nt / 2.0

    def _check(self, x, what: str):
        if x.ndim < 1 or x.shape[-1] != self.nt:
            raise InputError(f"symae.{what}: traces of {x.shape[-1] if x.ndim else 0} samples "
                             f"(input shape {tuple(x.shape)}); the model was built for nt = {self.nt}")

    # ------------------------------------------------------------------ pieces
    def predict_shifts(self, x):
        """Traces ``(..., nt)`` -> delays ``(...)`` in samples (positive: the trace is late)."""
        self._check(x, "predict_shifts")
        if not self.use_shifts:
            return jnp.zeros(x.shape[:-1], x.dtype)
        shifts = self.shift_network(x) * self.samples_per_shift_unit
        if self.max_shift > 0:
            shifts = self.max_shift * jnp.tanh(shifts / self.max_shift)
        return shifts

    def align(self, x):
        """Traces ``(..., nt)`` -> ``(aligned traces, shifts)``: each trace advanced by its delay."""
        shifts = self.predict_shifts(x)
        return fourier_shift(x, -shifts), shifts

    def encode_coherent(self, x, mask=None, *, align: bool = True):
        """Traces ``(..., ntau, nt)`` (+ mask ``(..., ntau)``) -> the pooled coherent Gaussian:
        ``{"mean", "log_precision"}`` ``(..., p)`` and the per-trace heads ``{"trace_mean",
        "trace_log_precision"}`` ``(..., ntau, p)``. ``align=False`` skips the shift network (for
        traces already aligned, e.g. decoded virtual seismograms)."""
        self._check(x, "encode_coherent")
        if align:
            x, _ = self.align(x)
        trace_mean, trace_log_precision = self.coherent_encoder(x)
        mean, log_precision = pool_gaussians(trace_mean, trace_log_precision, mask)
        return {"mean": mean, "log_precision": log_precision,
                "trace_mean": trace_mean, "trace_log_precision": trace_log_precision}

    def encode_nuisance(self, x, *, align: bool = True):
        """Traces ``(..., nt)`` -> ``{"mean", "logvar"}``, each ``(..., q)``."""
        self._check(x, "encode_nuisance")
        if align:
            x, _ = self.align(x)
        mean, logvar = self.nuisance_encoder(x)
        return {"mean": mean, "logvar": logvar}

    def decode(self, c, n):
        """Coherent codes ``c`` and nuisance codes ``n (..., q)`` -> aligned traces ``(..., nt)``.

        ``c`` is ``(..., p)`` with the same leading shape as ``n``, or with one axis fewer (one code
        per datapoint, ``(B, p)`` against ``n (B, ntau, q)``): it is then repeated over the traces.
        Leading shapes broadcast."""
        c, n = jnp.asarray(c), jnp.asarray(n)
        if c.shape[-1] != self.p or n.shape[-1] != self.q:
            raise InputError(f"symae.decode: codes of sizes {c.shape[-1]} and {n.shape[-1]}; "
                             f"the model has p = {self.p}, q = {self.q}")
        if c.ndim == n.ndim - 1:
            c = c[..., None, :]
        lead = jnp.broadcast_shapes(c.shape[:-1], n.shape[:-1])
        codes = jnp.concatenate([jnp.broadcast_to(c, lead + (self.p,)),
                                 jnp.broadcast_to(n, lead + (self.q,))], axis=-1)
        return self.decoder(codes)

    # ------------------------------------------------------------------ forward
    def __call__(self, x, mask=None, *, train: bool = False):
        """``x (B, ntau, nt)``, ``mask (B, ntau)`` or None -> dict of outputs (see the module
        docstring; shapes in brackets): ``reconstruction`` and ``reconstruction_aligned`` (B, ntau,
        nt), ``aligned`` (B, ntau, nt) the shifted inputs, ``shifts`` (B, ntau) samples,
        ``shift_unit`` () samples per unit of the shift penalty, ``coherent`` {mean, log_precision,
        sample (B, p), trace_mean, trace_log_precision (B, ntau, p)}, ``nuisance`` {mean, logvar,
        sample (B, ntau, q)}, ``decoder_logvar`` ().

        ``train=True`` samples the codes and needs the ``"sample"`` rng stream."""
        if x.ndim != 3:
            raise InputError(f"symae: expected traces (batch, ntau, nt), got shape {tuple(x.shape)}")
        self._check(x, "__call__")
        if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
            raise InputError(f"symae: mask of shape {tuple(mask.shape)} for traces of shape {tuple(x.shape)}; "
                             "expected (batch, ntau)")
        aligned, shifts = self.align(x)
        coherent = self.encode_coherent(aligned, mask, align=False)
        nuisance = self.encode_nuisance(aligned, align=False)
        c, n = coherent["mean"], nuisance["mean"]
        if train:
            key_c, key_n = jax.random.split(self.make_rng("sample"))
            if self.sample_coherent:
                c = c + jnp.exp(-0.5 * coherent["log_precision"]) * jax.random.normal(key_c, c.shape, c.dtype)
            n = n + jnp.exp(0.5 * nuisance["logvar"]) * jax.random.normal(key_n, n.shape, n.dtype)
        decoded = self.decode(c, n)
        return {
            "reconstruction": fourier_shift(decoded, shifts),
            "reconstruction_aligned": decoded,
            "aligned": aligned,
            "shifts": shifts,
            "shift_unit": jnp.asarray(self.samples_per_shift_unit, x.dtype),
            "coherent": {**coherent, "sample": c},
            "nuisance": {**nuisance, "sample": n},
            "decoder_logvar": self.decoder_logvar,
        }


# ----------------------------------------------------------------------------- loss
def symae_per_datapoint(outputs, x, mask=None):
    """Per-datapoint sums of the loss pieces, for exact means over batches, devices and hosts.

    ``outputs``: :meth:`SymAE.__call__`'s dict for ``x (B, ntau, nt)``; ``mask (B, ntau)`` or None.
    Returns ``{name: (B,)}``: ``nll`` (Gaussian negative log-likelihood of the valid traces under the
    reconstruction and the decoder variance, summed over time and traces), ``kl_nuisance`` (summed
    over valid traces), ``kl_coherent`` (of the pooled code), ``shift_sq`` (sum of squared shifts of
    the valid traces, in shift units), ``sq_err`` (sum of squared reconstruction errors), ``traces``
    (number of valid traces) and ``samples`` (valid traces x nt).
    """
    valid = jnp.ones(x.shape[:2], x.dtype) if mask is None else jnp.asarray(mask).astype(x.dtype)
    recon = outputs["reconstruction"]
    err = jnp.where(valid[..., None] > 0, x - recon, 0.0)   # masked traces may hold anything
    logvar = outputs["decoder_logvar"]
    nll_trace = jnp.sum(0.5 * (_LOG_2PI + logvar + jnp.square(err) * jnp.exp(-logvar)), axis=-1)
    kl_n = kl_standard_normal_logvar(outputs["nuisance"]["mean"], outputs["nuisance"]["logvar"])
    shifts = jnp.where(valid > 0, outputs["shifts"] / outputs["shift_unit"], 0.0)
    return {
        "nll": jnp.sum(valid * nll_trace, axis=1),
        "kl_nuisance": jnp.sum(jnp.where(valid > 0, kl_n, 0.0), axis=1),
        "kl_coherent": kl_standard_normal_log_precision(outputs["coherent"]["mean"],
                                                        outputs["coherent"]["log_precision"]),
        "shift_sq": jnp.sum(jnp.square(shifts), axis=1),
        "sq_err": jnp.sum(jnp.square(err), axis=(1, 2)),
        "traces": jnp.sum(valid, axis=1),
        "samples": jnp.sum(valid, axis=1) * x.shape[-1],
    }


def _safe_sqrt(value):
    """sqrt with gradient 0 (a subgradient of the norm) instead of NaN at 0: every shift starts at 0."""
    positive = value > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, value, 1.0)), 0.0)


def symae_loss(outputs, x, mask=None, *, gamma: float = 100.0, beta_nuisance: float = 1.0,
               beta_coherent: float = 1.0, shift_penalty: str = "norm"):
    """The negative ELBO of the SymAE plus the shift penalty, per valid trace.

    ``loss = nll + kl_nuisance + kl_coherent + shift``, each term a sum over the batch divided by
    the number ``N`` of valid traces in it:

    - ``nll``: sum over valid traces and samples of ``0.5 (log 2 pi + lv + (x - xhat)^2 / exp(lv))``
      with the learned decoder log-variance ``lv`` (nats per trace);
    - ``kl_nuisance``: ``beta_nuisance`` x sum over valid traces of KL(q(n_i | x_i) || N(0, I));
    - ``kl_coherent``: ``beta_coherent`` x sum over datapoints of KL(pooled q(c | x) || N(0, I));
    - ``shift``: ``gamma`` x ``||s||_2`` (``shift_penalty="norm"``, the reference's norm over every
      valid shift of the batch) or ``gamma`` x ``sum s^2`` (``"mean_square"``, so the term is
      ``gamma`` x the mean square shift), ``s`` in units of ``outputs["shift_unit"]`` (nt / 2
      samples by default: the reference's unit); then divided by ``N``.

    Up to the constant ``0.5 log(2 pi) nt``, this is the reference's loss (which sums everything over
    the batch) divided by ``N``; with ``"norm"`` the weight of the penalty per trace therefore
    shrinks like ``1 / sqrt(N)`` with the batch, as it does there. Masked traces contribute nothing.
    Returns ``(loss, terms)``: ``terms`` has the four weighted terms above, plus the diagnostics
    ``mse`` (mean squared error per valid sample) and ``shift_rms`` (root mean square shift of the
    valid traces, in samples), which are not part of the loss.
    """
    if shift_penalty not in ("norm", "mean_square"):
        raise InputError(f"symae_loss: shift_penalty = {shift_penalty!r}; expected 'norm' or 'mean_square'")
    sums = {name: jnp.sum(value) for name, value in symae_per_datapoint(outputs, x, mask).items()}
    n_traces = jnp.maximum(sums["traces"], 1.0)
    penalty = _safe_sqrt(sums["shift_sq"]) if shift_penalty == "norm" else sums["shift_sq"]
    terms = {
        "nll": sums["nll"] / n_traces,
        "kl_nuisance": beta_nuisance * sums["kl_nuisance"] / n_traces,
        "kl_coherent": beta_coherent * sums["kl_coherent"] / n_traces,
        "shift": gamma * penalty / n_traces,
    }
    loss = terms["nll"] + terms["kl_nuisance"] + terms["kl_coherent"] + terms["shift"]
    terms["mse"] = sums["sq_err"] / jnp.maximum(sums["samples"], 1.0)
    terms["shift_rms"] = outputs["shift_unit"] * jnp.sqrt(sums["shift_sq"] / n_traces)
    return loss, terms


def count_params(tree) -> int:
    """Number of scalars in a pytree of arrays (e.g. ``variables["params"]``)."""
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))


#: ``config.model.name`` -> module class
MODELS = {"symae": SymAE}
