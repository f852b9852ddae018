"""Coherent-information extraction with a trained SymAE: source time functions (STFs) of every
(event, pixel) group of a dataset in one compiled call.

The reference's ``get_coherent_information``, vectorised over all events and pixels. Inputs are
plain arrays (:class:`GroupArrays`): the traces of ``G`` (event, pixel) groups padded to ``M``
traces, ``(G, M, nt)``, a mask ``(G, M)`` and the event of each group ``(G,)``. Per event:

1. **Target code.** The event's target pixel is its group with the most stations (valid traces);
   its coherent code is :meth:`SymAE.encode_coherent` over all of that group's traces (the shift
   network aligns them first).
2. **Scoring.** Every valid trace of the event (all its pixels) gives a nuisance code (the mean of
   :meth:`SymAE.encode_nuisance` of the aligned trace); decoded with the target code it is a
   *virtual seismogram*: the target source seen through that trace's path. The virtual trace is
   re-encoded alone (``align=False``) and scored by ``KL(target Gaussian || re-encoded Gaussian)``
   (diagonal Gaussians, :func:`kl_gaussians`). The ``N = n_best`` codes of smallest KL are kept.
3. **Optimisation.** Those ``N`` codes are refined by gradient descent (``jax.grad``; by default
   ``optax.sgd``, the plain update ``n <- n - lr * grad``; ``optimizer="adam"`` as an option) on, per
   code ``i``::

       J_i(n_i) = KL_i(n_i) / KL_i(n_i^0) + alpha * mean_t |z_i(t)|,   z_i = standardised virtual trace

   The KL term is normalised by its value at the start (so it starts at 1 whatever ``p`` is); the
   L1 norm of the standardised (zero mean, unit std) virtual trace favours compact, impulsive
   virtual seismograms: paths that add little to the source. Each code takes its own gradient step
   (the gradient of the sum of the ``J_i``); the recorded loss history is the mean of ``J_i`` over
   the event's codes, ``steps + 1`` values (before each step and after the last).
4. **Per pixel.** The pixel's own coherent code (over its traces) is decoded with the event's ``N``
   optimised codes into ``N`` virtual seismograms. ``stf`` is their mean Hilbert envelope normalised
   to a maximum of 1 (the reference's estimate). ``stf_signed`` keeps sign and timing: the virtual
   traces are aligned to the best-scoring one by the circular cross-correlation peak (sub-sample,
   polarity by the sign of the peak), stacked, and the stack's sign is fixed so that it correlates
   positively with the mean of the (network-)aligned input traces at its strongest lag (correlations
   of the demeaned signals); the stack is phase-weighted (Schimmel & Paulssen 1997: times the
   coherence of the virtual traces' instantaneous phases to the power ``signed_stack_nu`` = 2), so
   that what the nuisance codes do not share is suppressed as in the baselines' phase-weighted
   stacks, and normalised to ``max |.| = 1``.
5. **Time shifts as nuisance parameters.** Each input trace's delay ``s`` is refined, starting from
   the shift network's prediction, so that the advanced trace ``fourier_shift(x, -s)`` best matches a
   template in the decoder's (aligned) frame: the pixel's coherent code decoded with the trace's own
   nuisance code, ``decode(c_pixel, n_i)``. The objective is the normalised correlation of the
   demeaned signals minus ``shift_prior * (s - s_mean)^2`` (seconds), a Gaussian prior towards the
   group's mean network delay ``s_mean``: the SymAE loss's own penalty on the shifts' size. Without it
   the refinement fits noise and the neighbouring cycles of noisy traces, and ends further from the
   true timing errors than the network's shifts it started from (seisjax/symae/README.md). The start
   is the best integer lag within ``shift_search`` samples of the prediction by the same penalised
   score, then Newton steps using ``jax.grad`` (and the gradient of the gradient) through
   :func:`~seisjax.ops.fourier.fourier_shift`, falling back to a bounded gradient step where the
   objective is not concave, each step clipped to ``max_shift_step`` samples. Outputs: per-trace
   delays (in samples and seconds; positive = later than the template) and the aligned traces.
6. **The data stacked on SymAE's clock.** ``stf_stack`` is the Hilbert envelope of the
   phase-weighted stack (:func:`~seisjax.symae.baselines.phase_weighted_stack`, ``nu = 2``) of
   the group's input traces aligned by the refined shifts, normalised to 1; ``stf_stack_signed`` the
   stack itself (``max |.| = 1``). It uses SymAE only for the timing, and the data, not the decoder,
   for the waveform: the classical stack with SymAE's alignment in place of MCCC's or ICCS's.

Every stage runs over all events and pixels at once (:func:`make_extractor`): per-group stages are
``jax.vmap``-ed over groups (or ``jax.lax.map``-ed in batches of ``group_batch`` groups when memory
requires), per-event stages over events, and the top-``N`` selection is one sort over all traces;
there is no Python loop over events or pixels. The gradient steps run inside one compiled
``lax.scan`` on accelerators; on CPU (``loop="auto"``) one compiled step over all events is called
once per step from Python instead, because XLA:CPU runs convolution gradients inside compiled loops
several times slower (benchmarks/README.md).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import optax

from seisjax.data.stft import hilbert_envelope
from seisjax.errors import InputError
from seisjax.ops.fourier import fourier_shift
from seisjax.symae.baselines import phase_weighted_stack
from seisjax.symae.data import GroupArrays

__all__ = ["ExtractionConfig", "Extraction", "kl_gaussians", "analytic_envelope", "refine_shifts",
           "target_groups", "make_extractor", "extract_coherent", "aligned_stack", "write_extraction_hdf5",
           "read_extraction_hdf5"]


# ============================================================================ configuration and data
@dataclass(frozen=True)
class ExtractionConfig:
    """Settings of :func:`extract_coherent` (hashable: one compiled function per config).

    ``n_best`` nuisance codes kept per event (the reference's N = 10); ``steps``, ``lr``, ``alpha``:
    their gradient descent (``steps = 0`` keeps the scored codes as they are), ``optimizer``
    ``"sgd"`` (plain gradient descent, the default) or ``"adam"`` (optax); ``shift_steps`` Newton /
    gradient iterations of the per-trace shift refinement (0: keep the network's shifts),
    ``max_shift_step`` the largest change of a shift per iteration (samples), ``shift_search`` the
    half-width (samples) of an integer-lag search around the network's prediction before refining
    (0: none, start from the prediction), ``shift_prior`` the weight (per squared second) of the
    penalty that pulls each delay towards its group's mean network delay (0: none);
    ``signed_stack_nu`` the power of the phase coherence that weights the ``stf_signed`` stack of
    the virtual seismograms (0: their linear stack); ``sampling_rate`` (Hz) converts shifts to
    seconds; ``group_batch`` groups per vectorised batch inside the compiled calls (None: all groups
    at once); ``loop`` how the optimisation steps run: ``"scan"`` inside one compiled call,
    ``"host"`` as one compiled step over all events called from Python per step, ``"auto"`` host on
    CPU, scan elsewhere (module docstring)."""

    n_best: int = 10
    steps: int = 100
    lr: float = 0.1
    alpha: float = 0.1
    optimizer: str = "sgd"
    shift_steps: int = 30
    max_shift_step: float = 1.0
    shift_search: int = 3
    shift_prior: float = 0.03
    signed_stack_nu: float = 2.0
    sampling_rate: float = 1.0
    group_batch: int | None = None
    loop: str = "auto"

    def __post_init__(self):
        if self.n_best < 1:
            raise InputError(f"extraction: n_best = {self.n_best} must be >= 1")
        if self.steps < 0 or self.shift_steps < 0 or self.shift_search < 0:
            raise InputError(f"extraction: steps ({self.steps}), shift_steps ({self.shift_steps}) and "
                             f"shift_search ({self.shift_search}) must be >= 0")
        if not self.shift_prior >= 0:
            raise InputError(f"extraction: shift_prior = {self.shift_prior} must be >= 0")
        if not self.signed_stack_nu >= 0:
            raise InputError(f"extraction: signed_stack_nu = {self.signed_stack_nu} must be >= 0")
        if not self.lr > 0 or self.alpha < 0 or not self.max_shift_step > 0:
            raise InputError(f"extraction: lr ({self.lr}) and max_shift_step ({self.max_shift_step}) must be "
                             f"> 0 and alpha ({self.alpha}) >= 0")
        if self.optimizer not in ("sgd", "adam"):
            raise InputError(f"extraction: optimizer = {self.optimizer!r}; expected 'sgd' or 'adam'")
        if self.loop not in ("auto", "scan", "host"):
            raise InputError(f"extraction: loop = {self.loop!r}; expected 'auto', 'scan' or 'host'")
        if not self.sampling_rate > 0:
            raise InputError(f"extraction: sampling_rate = {self.sampling_rate} must be > 0")
        if self.group_batch is not None and self.group_batch < 1:
            raise InputError(f"extraction: group_batch = {self.group_batch} must be >= 1 (or None)")


@dataclass
class Extraction:
    """What :func:`extract_coherent` returns (numpy arrays; G groups, M traces per group, E events,
    N codes per event).

    Per group: ``stf (G, nt)``, ``stf_signed (G, nt)``, ``virtual (G, N, nt)``, ``aligned (G, M, nt)``
    (inputs advanced by the refined shifts), ``shifts (G, M)`` refined delays in samples (NaN where
    masked) and ``shifts_initial`` (the network's), ``reconstruction (G, M, nt)`` the model's
    reconstruction of each input (in the input's frame), ``scores (G, M)`` the KL of each trace's
    virtual seismogram (inf where masked), ``coherent_mean (G, p)``. Per event: ``target_group (E,)``,
    ``best_traces (E, N, 2)`` (group, trace) of the chosen codes, ``best_mask (E, N)``,
    ``nuisance_initial`` and ``nuisance (E, N, q)``, ``loss_history``, ``kl_history``, ``l1_history``
    ``(E, steps + 1)`` (means over the event's codes of the normalised KL and the L1 term).
    ``stf_stack``, ``stf_stack_signed (G, nt)``: the phase-weighted stack of ``aligned`` (module
    docstring, item 6; None when not computed)."""

    stf: np.ndarray
    stf_signed: np.ndarray
    virtual: np.ndarray
    aligned: np.ndarray
    shifts: np.ndarray
    shifts_initial: np.ndarray
    reconstruction: np.ndarray
    scores: np.ndarray
    coherent_mean: np.ndarray
    target_group: np.ndarray
    best_traces: np.ndarray
    best_mask: np.ndarray
    nuisance_initial: np.ndarray
    nuisance: np.ndarray
    loss_history: np.ndarray
    kl_history: np.ndarray
    l1_history: np.ndarray
    config: ExtractionConfig = field(default_factory=ExtractionConfig)
    stf_stack: np.ndarray | None = None
    stf_stack_signed: np.ndarray | None = None


# ============================================================================ small pure functions
def kl_gaussians(mean_a, log_precision_a, mean_b, log_precision_b):
    """``KL(N(a) || N(b))`` of diagonal Gaussians given by means and log precisions, summed over the
    last axis: ``0.5 sum(lp_a - lp_b + exp(lp_b - lp_a) + (m_a - m_b)^2 exp(lp_b) - 1)``."""
    diff = mean_a - mean_b
    return 0.5 * jnp.sum(log_precision_a - log_precision_b + jnp.exp(log_precision_b - log_precision_a)
                         + jnp.square(diff) * jnp.exp(log_precision_b) - 1.0, axis=-1)


def analytic_envelope(x, axis: int = -1):
    """Hilbert envelope ``|x + i H(x)|`` in jax (the FFT construction of scipy.signal.hilbert)."""
    x = jnp.asarray(x)
    return jnp.abs(analytic_signal(x, axis)).astype(x.dtype)


def analytic_signal(x, axis: int = -1):
    """``x + i H(x)`` in jax (complex; the FFT construction of scipy.signal.hilbert)."""
    x = jnp.moveaxis(jnp.asarray(x), axis, -1)
    n = x.shape[-1]
    weights = np.zeros(n)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[1:n // 2] = 2.0
        weights[n // 2] = 1.0
    else:
        weights[1:(n + 1) // 2] = 2.0
    analytic = jnp.fft.ifft(jnp.fft.fft(x, axis=-1) * jnp.asarray(weights, x.dtype), axis=-1)
    return jnp.moveaxis(analytic, -1, axis)


def _phase_coherence(x, weights):
    """``|mean_j exp(i phi_j(t))|`` over axis 0 of ``x`` ``(N, T)`` (``weights``: which rows count):
    the coherence of a phase-weighted stack (:func:`seisjax.symae.baselines.phase_weighted_stack`)."""
    analytic = analytic_signal(x)
    amplitude = jnp.abs(analytic)
    phasor = jnp.where(amplitude > 0, analytic / jnp.where(amplitude > 0, amplitude, 1.0), 0.0)
    return jnp.abs(_masked_mean(phasor, weights, 0)).astype(x.dtype)


def _circular_xcorr(a, b):
    """``cc[k] = sum_n a[n + k] b[n]`` (circular; ``k > 0``: ``a`` is delayed by ``k``)."""
    n = a.shape[-1]
    return jnp.fft.irfft(jnp.fft.rfft(a, axis=-1) * jnp.conj(jnp.fft.rfft(b, axis=-1)), n=n, axis=-1)


def _peak_lag(cc, *, absolute: bool):
    """Sub-sample lag (in ``[-n/2, n/2)``) and signed value of the circular correlation peak."""
    n = cc.shape[-1]
    score = jnp.abs(cc) if absolute else cc
    k = jnp.argmax(score, axis=-1)
    centre = jnp.take_along_axis(score, k[..., None], -1)[..., 0]
    left = jnp.take_along_axis(score, ((k - 1) % n)[..., None], -1)[..., 0]
    right = jnp.take_along_axis(score, ((k + 1) % n)[..., None], -1)[..., 0]
    curvature = left - 2.0 * centre + right
    ok = curvature < 0
    delta = jnp.where(ok, 0.5 * (left - right) / jnp.where(ok, curvature, -1.0), 0.0)
    lag = jnp.where(k >= n // 2, k - n, k).astype(cc.dtype) + delta
    value = jnp.take_along_axis(cc, k[..., None], -1)[..., 0]
    return lag, value


def _masked_mean(x, weights, axis):
    w = jnp.expand_dims(weights.astype(x.dtype), tuple(range(weights.ndim, x.ndim)))
    return jnp.sum(x * w, axis=axis) / jnp.maximum(jnp.sum(w, axis=axis), 1.0)


def _demean_normalise(x):
    x = x - jnp.mean(x, axis=-1, keepdims=True)
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.where(norm > 0, norm, 1.0)


def refine_shifts(traces, templates, initial_shifts, *, steps: int = 30, max_step: float = 1.0,
                  search: int = 0, min_curvature: float = 0.05, prior_centre=None, prior_weight: float = 0.0):
    """Delays ``s`` that make ``fourier_shift(traces, -s)`` best match ``templates``.

    ``traces (..., nt)``, ``templates`` broadcastable to them, ``initial_shifts (...)`` in samples.
    Maximises, trace by trace, the normalised correlation ``rho(s)`` of the demeaned signals minus a
    Gaussian prior penalty ``prior_weight * (s - prior_centre)^2`` (``prior_centre`` broadcastable
    to ``initial_shifts``, default 0; the weight per squared sample; 0: no prior). The prior keeps
    a noisy trace from jumping to a neighbouring cycle or to a lag that only fits its noise.
    Starts from ``initial_shifts`` (or from the best integer lag within ``search`` samples of it by
    the same penalised score), then Newton steps ``g / -h`` with ``g``, ``h`` from ``jax.grad``
    through the Fourier shift where the objective is concave (``-h > min_curvature``), else gradient
    steps ``g / min_curvature``; every step clipped to ``max_step`` samples. Returns ``(shifts,
    correlation)``, each ``(...)`` (``correlation``: ``rho`` at the shifts, without the penalty).
    jit-compatible; the ``steps``, ``search`` arguments must be static."""
    x = _demean_normalise(jnp.asarray(traces))
    template = _demean_normalise(jnp.broadcast_to(jnp.asarray(templates, x.dtype), x.shape))
    start = jnp.asarray(initial_shifts, x.dtype)
    centre = jnp.zeros_like(start) if prior_centre is None else \
        jnp.broadcast_to(jnp.asarray(prior_centre, x.dtype), start.shape)
    if search > 0:
        cc = _circular_xcorr(x, template)        # cc[k]: correlation with x delayed by k
        n = x.shape[-1]
        candidates = jnp.round(start)[..., None] + jnp.arange(-search, search + 1, dtype=x.dtype)
        values = jnp.take_along_axis(cc, jnp.mod(candidates, n).astype(jnp.int32), -1)
        values = values - prior_weight * jnp.square(candidates - centre[..., None])
        start = jnp.take_along_axis(candidates, jnp.argmax(values, -1)[..., None], -1)[..., 0]

    def correlation(s):
        return jnp.sum(fourier_shift(x, -s) * template, axis=-1)

    # traces are independent: the gradient of the sum is per trace
    total = lambda s: jnp.sum(correlation(s) - prior_weight * jnp.square(s - centre))
    gradient = jax.grad(total)
    curvature_of = jax.grad(lambda s: jnp.sum(gradient(s)))   # the diagonal of the Hessian

    def step(s, _):
        g = gradient(s)
        curvature = -curvature_of(s)
        update = jnp.clip(g / jnp.maximum(curvature, min_curvature), -max_step, max_step)
        return s + update, None

    shifts, _ = jax.lax.scan(step, start, None, length=steps)
    return shifts, correlation(shifts)


def target_groups(mask, group_event, n_events: int, n_stations=None) -> np.ndarray:
    """Per event, the index of its group with the most stations (``n_stations``, default the valid
    traces; ties go to the first group). Events without groups get -1."""
    mask = np.asarray(mask, dtype=bool)
    group_event = np.asarray(group_event, dtype=np.int64)
    weight = mask.sum(axis=1) if n_stations is None else np.asarray(n_stations)
    order = np.lexsort((np.arange(len(group_event)), -weight, group_event))  # by event, most first
    first = np.full(n_events, -1, dtype=np.int64)
    events_sorted = group_event[order]
    starts = np.flatnonzero(np.r_[True, events_sorted[1:] != events_sorted[:-1]]) if len(order) else []
    first[events_sorted[starts]] = order[starts]
    return first


# ============================================================================ the compiled extraction
_EXTRACTORS: dict = {}


def make_extractor(model, config: ExtractionConfig):
    """``extract(params, traces, mask, group_event, target_group) -> dict of arrays`` for a SymAE
    ``model`` (see the module docstring; keys as :class:`Extraction`'s fields, with ``best_index (E,
    N)`` flat indices into ``(G * M)`` in place of ``best_traces``). ``target_group`` (E,) must name
    a group of each event (-1 for an event without groups). Three compiled stages, each over every
    event and pixel: preparation (codes, scores, selection), the optimisation (one compiled
    ``lax.scan``, or with ``config.loop == "host"`` one compiled step over all events called
    ``steps + 1`` times) and the per-pixel outputs. Cached per model, config and backend."""
    key = (model, config, jax.default_backend())
    if key in _EXTRACTORS:
        return _EXTRACTORS[key]
    n_best, cfg = config.n_best, config
    loop = config.loop if config.loop != "auto" else ("host" if jax.default_backend() == "cpu" else "scan")

    def apply(params, *args, method, **kwargs):
        return model.apply({"params": params}, *args, method=method, **kwargs)

    def group_codes(params, x, m):
        """One group: network shifts, aligned traces, pooled coherent code, per-trace nuisance means."""
        shifts0 = apply(params, x, method="predict_shifts")
        aligned0 = fourier_shift(x, -shifts0)
        coherent = apply(params, aligned0, m, method="encode_coherent", align=False)
        nuisance = apply(params, aligned0, method="encode_nuisance", align=False)
        return shifts0, aligned0, coherent["mean"], coherent["log_precision"], nuisance["mean"]

    def reencode(params, virtual):
        """Each virtual trace's coherent Gaussian, encoded alone (no alignment)."""
        coh = apply(params, virtual[..., None, :], method="encode_coherent", align=False)
        return coh["mean"], coh["log_precision"]

    def score_group(params, target_mean, target_lp, nuisance, m):
        virtual = apply(params, target_mean, nuisance, method="decode")            # (M, nt)
        mean, lp = reencode(params, virtual)
        kl = kl_gaussians(target_mean, target_lp, mean, lp)
        return jnp.where(m, kl, jnp.inf)

    tx = optax.sgd(cfg.lr) if cfg.optimizer == "sgd" else optax.adam(cfg.lr)

    def code_objective(params, codes, target_mean, target_lp, kl_scale, valid):
        """One event: the sum of its valid codes' objectives, and (per code) objective, KL/KL0, L1."""
        virtual = apply(params, target_mean, codes, method="decode")                # (N, nt)
        mean, lp = reencode(params, virtual)
        kl = kl_gaussians(target_mean, target_lp, mean, lp) / kl_scale
        z = virtual - jnp.mean(virtual, axis=-1, keepdims=True)
        l1 = jnp.mean(jnp.abs(z / (jnp.std(virtual, axis=-1, keepdims=True) + 1e-6)), axis=-1)
        per_code = kl + cfg.alpha * l1
        return jnp.sum(jnp.where(valid, per_code, 0.0)), (per_code, kl, l1)

    def event_step(params, codes, opt_state, i, target_mean, target_lp, kl_scale, valid):
        """One event, one evaluation ``i`` of ``steps + 1``: the objective's terms (means over the valid
        codes) at ``codes``, and the codes after a gradient update (none after the last evaluation)."""
        (_, terms), grad = jax.value_and_grad(code_objective, argnums=1, has_aux=True)(
            params, codes, target_mean, target_lp, kl_scale, valid)
        updates, new_state = tx.update(grad, opt_state, codes)
        last = i >= cfg.steps
        codes = jnp.where(last, codes, optax.apply_updates(codes, updates))
        opt_state = jax.tree_util.tree_map(lambda old, new: jnp.where(last, old, new), opt_state, new_state)
        return codes, opt_state, tuple(_masked_mean(t, valid, 0) for t in terms)

    all_events_step = jax.vmap(event_step, in_axes=(None, 0, 0, None, 0, 0, 0, 0))

    def pixel_outputs(params, x, m, shifts0, aligned0, c_mean, nuisance, codes, valid):
        """One group: virtual seismograms, STFs, refined shifts, reconstructions."""
        n_codes = codes.shape[0]
        decoded = apply(params, c_mean, jnp.concatenate([codes, nuisance]), method="decode")
        virtual, decoded = decoded[:n_codes], decoded[n_codes:]        # (N, nt); (M, nt) in the aligned frame
        envelope = analytic_envelope(virtual)
        stf = _masked_mean(envelope, valid, 0)
        stf = stf / jnp.where(jnp.max(stf) > 0, jnp.max(stf), 1.0)
        # sign-keeping stack: align the virtual traces to the best-scoring one, then fix the sign
        # (correlations of demeaned signals: the sign is the waveform's, not the DC offset's)
        centred = virtual - jnp.mean(virtual, axis=-1, keepdims=True)
        lag, value = _peak_lag(_circular_xcorr(centred, centred[0]), absolute=True)
        polarity = jnp.where(value < 0, -1.0, 1.0).astype(virtual.dtype)
        aligned_virtual = polarity[:, None] * fourier_shift(virtual, -lag)
        stack = _masked_mean(aligned_virtual, valid, 0)
        inputs_mean = _masked_mean(aligned0, m, 0)
        _, value = _peak_lag(_circular_xcorr(stack - jnp.mean(stack), inputs_mean - jnp.mean(inputs_mean)),
                             absolute=True)
        stack = jnp.where(value < 0, -stack, stack)
        weighted = stack * _phase_coherence(aligned_virtual, valid) ** cfg.signed_stack_nu
        peak = jnp.max(jnp.abs(weighted))
        stf_signed = weighted / jnp.where(peak > 0, peak, 1.0)
        if cfg.shift_steps > 0 or cfg.shift_search > 0:
            # the prior pulls each delay towards the group's mean network delay (the delays are relative)
            centre = jnp.sum(jnp.where(m, shifts0, 0.0)) / jnp.maximum(jnp.sum(m), 1)
            shifts, _ = refine_shifts(x, decoded, shifts0, steps=cfg.shift_steps, max_step=cfg.max_shift_step,
                                      search=cfg.shift_search, prior_centre=centre,
                                      prior_weight=cfg.shift_prior / cfg.sampling_rate ** 2)
        else:
            shifts = shifts0
        aligned = fourier_shift(x, -shifts)
        return {"virtual": virtual, "stf": stf, "stf_signed": stf_signed, "shifts": shifts,
                "aligned": jnp.where(m[:, None], aligned, 0.0),
                "reconstruction": fourier_shift(decoded, shifts0)}

    def over_groups(fn, *args):
        """``fn`` over the leading (group) axis of ``args``: vmapped, or in vmapped batches."""
        if cfg.group_batch is None:
            return jax.vmap(fn)(*args)
        return jax.lax.map(lambda a: fn(*a), args, batch_size=cfg.group_batch)

    @jax.jit
    def prepare(params, traces, mask, group_event, target_group):
        """Codes of every group, KL scores of every trace, the top-N codes of every event."""
        n_groups, n_traces, _ = traces.shape
        n_events = target_group.shape[0]
        ev = group_event
        traces = jnp.where(mask[..., None], traces, 0.0)   # masked entries may hold anything
        # every group: network shifts, aligned traces and codes; the targets are some of these groups
        shifts0, aligned0, c_mean, c_lp, nuisance = over_groups(lambda x, m: group_codes(params, x, m), traces, mask)
        target = jnp.where(target_group >= 0, target_group, 0)
        t_mean, t_lp = c_mean[target], c_lp[target]
        # each trace's KL score under its event's target code
        scores = over_groups(lambda *a: score_group(params, *a), t_mean[ev], t_lp[ev], nuisance, mask)
        # top-N per event: one sort of all traces by (event, score)
        flat_event = jnp.repeat(ev, n_traces)
        flat_scores = scores.reshape(-1)
        order = jnp.lexsort((flat_scores, flat_event))
        per_event = jax.ops.segment_sum(jnp.ones_like(flat_event), flat_event, n_events)
        valid_per_event = jax.ops.segment_sum(mask.reshape(-1).astype(jnp.int32), flat_event, n_events)
        starts = jnp.cumsum(per_event) - per_event
        rank = jnp.arange(n_best)
        take = jnp.minimum(rank[None, :], jnp.maximum(valid_per_event[:, None] - 1, 0))
        best_index = order[jnp.clip(starts[:, None] + take, 0, n_groups * n_traces - 1)]
        best_mask = rank[None, :] < valid_per_event[:, None]
        kl0 = flat_scores[best_index]           # the scores are the KLs of the initial codes
        return {"traces": traces, "shifts_initial": shifts0, "aligned0": aligned0, "coherent_mean": c_mean,
                "nuisance_all": nuisance, "scores": scores, "best_index": best_index, "best_mask": best_mask,
                "nuisance_initial": nuisance.reshape(n_groups * n_traces, -1)[best_index],
                "target_mean": t_mean, "target_lp": t_lp,
                "kl_scale": jnp.where(jnp.isfinite(kl0), jnp.maximum(kl0, 1e-8), 1.0)}

    def optimise(params, p):
        """Gradient descent on every event's codes at once: ``(codes, (loss, kl, l1) histories)``."""
        codes0 = p["nuisance_initial"]
        state0 = jax.vmap(tx.init)(codes0)
        fixed = (p["target_mean"], p["target_lp"], p["kl_scale"], p["best_mask"])
        if loop == "scan":
            return scan_optimise(params, codes0, state0, *fixed)
        codes, state, history = jnp.copy(codes0), state0, []   # a copy: the steps donate their inputs
        for i in range(cfg.steps + 1):   # steps, not events: each call updates every event's codes
            codes, state, terms = jit_step(params, codes, state, i, *fixed)
            history.append(terms)
        return codes, tuple(jnp.stack(h, axis=1) for h in zip(*history))

    @jax.jit
    def scan_optimise(params, codes0, state0, *fixed):
        def body(carry, i):
            codes, state, terms = all_events_step(params, *carry, i, *fixed)
            return (codes, state), terms

        (codes, _), history = jax.lax.scan(body, (codes0, state0), jnp.arange(cfg.steps + 1))
        return codes, tuple(h.T for h in history)

    jit_step = jax.jit(all_events_step, donate_argnums=(1, 2))

    @jax.jit
    def finish(params, p, codes, histories, group_event, target_group):
        ev = group_event
        per_pixel = over_groups(lambda *a: pixel_outputs(params, *a), p["traces"], p["traces_mask"],
                                p["shifts_initial"], p["aligned0"], p["coherent_mean"], p["nuisance_all"],
                                codes[ev], p["best_mask"][ev])
        has_codes = (target_group >= 0) & jnp.any(p["best_mask"], axis=1)
        loss_h, kl_h, l1_h = (jnp.where(has_codes[:, None], h, jnp.nan) for h in histories)
        keep = ("shifts_initial", "scores", "coherent_mean", "best_index", "best_mask", "nuisance_initial")
        return {**per_pixel, **{k: p[k] for k in keep}, "nuisance": codes, "loss_history": loss_h,
                "kl_history": kl_h, "l1_history": l1_h}

    def extract(params, traces, mask, group_event, target_group):
        p = prepare(params, traces, mask, group_event, target_group)
        codes, histories = optimise(params, p)
        return finish(params, {**p, "traces_mask": mask}, codes, histories, group_event, target_group)

    _EXTRACTORS[key] = extract
    return extract


def extract_coherent(model, params, groups: GroupArrays, config: ExtractionConfig | None = None, *,
                     target_group=None) -> Extraction:
    """Run the extraction (module docstring) over every group of ``groups`` in one compiled call.

    ``model``: a :class:`~seisjax.symae.model.SymAE`; ``params``: its ``params`` collection.
    ``target_group`` (E,) overrides the choice of each event's target pixel (default: the group with
    the most stations, :func:`target_groups`). Groups without a valid trace and events without a
    group give NaN outputs and a warning naming them."""
    config = config or ExtractionConfig(sampling_rate=groups.sampling_rate)
    nt = groups.traces.shape[-1]
    if nt != model.nt:
        raise InputError(f"extraction: traces of {nt} samples, but the model was trained on nt = {model.nt}")
    if abs(config.sampling_rate - groups.sampling_rate) > 1e-9 * groups.sampling_rate:
        raise InputError(f"extraction: config sampling_rate {config.sampling_rate} Hz differs from the data's "
                         f"{groups.sampling_rate} Hz")
    if target_group is None:
        target_group = target_groups(groups.mask, groups.group_event, groups.n_events, groups.n_stations)
    target_group = np.asarray(target_group, dtype=np.int64)
    if target_group.shape != (groups.n_events,):
        raise InputError(f"extraction: target_group has shape {target_group.shape}; expected ({groups.n_events},)")
    empty_groups = np.flatnonzero(~groups.mask.any(axis=1))
    if len(empty_groups):
        warnings.warn(f"extraction: {len(empty_groups)} group(s) without a valid trace get NaN outputs: "
                      + ", ".join(f"{groups.source_ids[groups.group_event[g]]}/{groups.pixels[g]}"
                                  for g in empty_groups[:10]), stacklevel=2)
    no_groups = np.flatnonzero(target_group < 0)
    if len(no_groups):
        warnings.warn(f"extraction: {len(no_groups)} event(s) without groups: "
                      + ", ".join(groups.source_ids[no_groups[:10]]), stacklevel=2)
    extract = make_extractor(model, config)
    out = jax.device_get(extract(params, jnp.asarray(groups.traces), jnp.asarray(groups.mask),
                                 jnp.asarray(groups.group_event, jnp.int32), jnp.asarray(target_group, jnp.int32)))
    out = {k: np.asarray(v) for k, v in out.items()}
    m = groups.traces.shape[1]
    best_index = out.pop("best_index")
    best_traces = np.stack([best_index // m, best_index % m], axis=-1)
    out["shifts"] = np.where(groups.mask, out["shifts"], np.nan)
    out["shifts_initial"] = np.where(groups.mask, out["shifts_initial"], np.nan)
    out["stf_stack"], out["stf_stack_signed"] = aligned_stack(out["aligned"], groups.mask)
    for name in ("stf", "stf_signed", "virtual", "stf_stack", "stf_stack_signed"):
        out[name] = np.where(groups.mask.any(axis=1).reshape((-1,) + (1,) * (out[name].ndim - 1)), out[name], np.nan)
    return Extraction(best_traces=best_traces, target_group=target_group, config=config, **out)


def aligned_stack(aligned, mask, *, nu: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """``(envelope, signed)`` ``(G, nt)`` of the phase-weighted stacks of the aligned traces
    ``(G, M, nt)`` over their valid traces ``mask (G, M)`` (module docstring, item 6), normalised
    to a maximum of 1 (zeros for a group without traces)."""
    aligned = np.where(mask[..., None], np.nan_to_num(np.asarray(aligned, np.float64)), 0.0)
    stack = phase_weighted_stack(aligned, nu=nu, mask=mask)
    envelope = hilbert_envelope(stack)
    normalise = lambda x: x / np.where(np.max(np.abs(x), -1, keepdims=True) > 0,  # noqa: E731
                                       np.max(np.abs(x), -1, keepdims=True), 1.0)
    return normalise(envelope), normalise(stack)


# ============================================================================ HDF5 output
def _group_name(text: str) -> str:
    return str(text).replace("/", "_") or "_"


def write_extraction_hdf5(path, groups: GroupArrays, result: Extraction, *, checkpoint_step: int | None = None,
                          displacement_envelope: np.ndarray | None = None, extra_attrs: dict | None = None) -> Path:
    """Write ``result`` as ``/<source_id>/<pixel>/{stf, stf_signed[, stf_stack, stf_stack_signed], virtual,
    aligned, shifts, shifts_samples, shifts_initial, trace_ids[, stations, displacement_envelope]}`` and
    ``/<source_id>/{loss_history,
    kl_history, l1_history, nuisance}``; root attributes ``time_start`` (s of the first sample
    relative to P), ``sampling_rate`` (Hz), ``nt``, ``N``, ``alpha``, ``lr``, ``steps``,
    ``checkpoint_step`` (-1: unknown) and the whole config as JSON. Only valid traces and codes are
    written (``shifts`` in seconds, ``shifts_samples`` in samples, row ``i`` of ``aligned`` is
    trace ``trace_ids[i]``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = result.config
    with h5py.File(path, "w") as f:
        f.attrs.update({"time_start": float(groups.time_start), "sampling_rate": float(groups.sampling_rate),
                        "nt": int(groups.traces.shape[-1]), "N": int(cfg.n_best), "alpha": float(cfg.alpha),
                        "lr": float(cfg.lr), "steps": int(cfg.steps),
                        "checkpoint_step": -1 if checkpoint_step is None else int(checkpoint_step),
                        "config": json.dumps(dataclasses.asdict(cfg)),
                        "layout": "/<source_id>/<pixel>/{stf, stf_signed, stf_stack, stf_stack_signed, virtual, aligned, shifts (s), "
                                  "shifts_samples, shifts_initial, trace_ids}; /<source_id>/loss_history"})
        for key, value in (extra_attrs or {}).items():
            f.attrs[key] = value
        for e, source in enumerate(groups.source_ids):
            ev = f.require_group(_group_name(source))
            ev.attrs["source_id"] = str(source)
            tg = int(result.target_group[e])
            ev.attrs["target_pixel"] = int(groups.pixels[tg]) if tg >= 0 else -1
            codes = result.best_mask[e]
            ev.create_dataset("loss_history", data=result.loss_history[e])
            ev.create_dataset("kl_history", data=result.kl_history[e])
            ev.create_dataset("l1_history", data=result.l1_history[e])
            ev.create_dataset("nuisance", data=result.nuisance[e][codes])
            chosen = result.best_traces[e][codes]
            ev.create_dataset("best_trace_ids", data=groups.trace_ids[chosen[:, 0], chosen[:, 1]])
        for g in range(len(groups.pixels)):
            valid = groups.mask[g]
            e = groups.group_event[g]
            pg = f[_group_name(groups.source_ids[e])].create_group(str(int(groups.pixels[g])))
            pg.attrs.update({"n_traces": int(valid.sum()), "is_target": bool(result.target_group[e] == g)})
            pg.create_dataset("stf", data=result.stf[g])
            pg.create_dataset("stf_signed", data=result.stf_signed[g])
            if result.stf_stack is not None:
                pg.create_dataset("stf_stack", data=result.stf_stack[g])
                pg.create_dataset("stf_stack_signed", data=result.stf_stack_signed[g])
            pg.create_dataset("virtual", data=result.virtual[g][result.best_mask[e]])
            pg.create_dataset("aligned", data=result.aligned[g][valid])
            pg.create_dataset("shifts", data=result.shifts[g][valid] / groups.sampling_rate)
            pg.create_dataset("shifts_samples", data=result.shifts[g][valid])
            pg.create_dataset("shifts_initial", data=result.shifts_initial[g][valid])
            pg.create_dataset("trace_ids", data=groups.trace_ids[g][valid])
            if groups.stations is not None:
                pg.create_dataset("stations", data=groups.stations[g][valid].astype("S"))
            if displacement_envelope is not None:
                pg.create_dataset("displacement_envelope", data=displacement_envelope[g])
    return path


def read_extraction_hdf5(path) -> dict:
    """``{"attrs": {...}, "events": {source_id: {"attrs", "loss_history", ..., "pixels": {pixel: {name:
    array}}}}}`` from a file of :func:`write_extraction_hdf5`."""
    out = {"attrs": {}, "events": {}}
    with h5py.File(path, "r") as f:
        out["attrs"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        for name, ev in f.items():
            event = {"attrs": dict(ev.attrs), "pixels": {}}
            for key, item in ev.items():
                if isinstance(item, h5py.Group):
                    event["pixels"][int(key)] = {"attrs": dict(item.attrs), **{k: item[k][()] for k in item}}
                else:
                    event[key] = item[()]
            out["events"][str(ev.attrs.get("source_id", name))] = event
    return out
