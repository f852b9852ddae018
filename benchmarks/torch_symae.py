"""PyTorch twin of SymAE (``seisjax/symae/model.py``), for ``python -m seisjax bench``.

The contract of a twin and of ``TWINS``: ``seisjax.bench.load_torch_twins``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def device_of(module: nn.Module) -> torch.device:
    """Where the module's parameters are: the batch goes there (the CPU, or a GPU in a GPU run)."""
    return next(module.parameters()).device


# ----------------------------------------------------------------------------- symae
_LOG_2PI = float(np.log(2.0 * np.pi))


def fourier_shift_torch(x, shift):
    """Twin of ``seisjax.ops.fourier.fourier_shift`` on the last axis: delay real traces ``x (..., W)``
    by ``shift (...)`` samples (circular, band-limited); for even ``W`` the Nyquist bin gets the real
    factor ``cos(pi * shift)``, as there."""
    width = x.shape[-1]
    shift = shift - width * torch.round(shift / width)   # keeps float32 phases accurate, changes nothing
    freqs = torch.arange(width // 2 + 1, dtype=x.dtype, device=x.device) / width
    phase = (-2.0 * np.pi) * freqs * shift[..., None]
    imag = torch.sin(phase)
    if width % 2 == 0:
        keep = torch.ones_like(freqs)
        keep[-1] = 0.0
        imag = imag * keep
    return torch.fft.irfft(torch.fft.rfft(x, dim=-1) * torch.complex(torch.cos(phase), imag), n=width, dim=-1)


class _TraceEncoderTorch(nn.Module):
    """Twin of ``TraceEncoder`` + two Dense heads (``CoherentEncoder`` / ``NuisanceEncoder``):
    ``(N, nt) -> (mean, second head)``, each ``(N, features)``. Flattens (channel, length), the
    PyTorch order; the loader permutes the Flax dense kernel accordingly."""

    def __init__(self, nt, features, leak, head_names):
        super().__init__()
        self.leak = leak
        self.conv0 = nn.Conv1d(1, 5, 50, padding="same")
        self.conv1 = nn.Conv1d(5, 10, 20, padding="same")
        self.conv2 = nn.Conv1d(10, 20, 20, padding="same")
        self.conv3 = nn.Conv1d(20, 50, 5, padding="same")
        self.dense = nn.Linear(50 * (nt // 16), features)
        self.head_names = head_names
        self.heads = nn.ModuleDict({name: nn.Linear(features, features) for name in head_names})

    def forward(self, traces):
        act = lambda h: nn.functional.leaky_relu(h, self.leak)  # noqa: E731
        h = act(self.conv0(traces.unsqueeze(1)))
        h = nn.functional.avg_pool1d(act(self.conv1(h)), 4)
        h = act(self.conv2(h))
        h = nn.functional.avg_pool1d(act(self.conv3(h)), 4)
        h = act(self.dense(h.flatten(1)))
        return tuple(self.heads[name](h) for name in self.head_names)


class _SymAEDecoderTorch(nn.Module):
    """Twin of ``SymAEDecoder``: codes ``(N, p + q)`` -> traces ``(N, nt)``."""

    def __init__(self, nt, codes, leak):
        super().__init__()
        self.leak = leak
        self.dense0 = nn.Linear(codes, nt)
        self.dense1 = nn.Linear(nt, nt)
        self.conv0 = nn.Conv1d(1, 5, 50, padding="same")
        self.conv1 = nn.Conv1d(5, 20, 20, padding="same")
        self.conv2 = nn.Conv1d(20, 20, 20, padding="same")
        self.conv3 = nn.Conv1d(20, 50, 5, padding="same")
        self.conv4 = nn.Conv1d(50, 1, 5, padding="same")

    def forward(self, codes):
        act = lambda h: nn.functional.leaky_relu(h, self.leak)  # noqa: E731
        h = act(self.dense1(act(self.dense0(codes)))).unsqueeze(1)
        for conv in (self.conv0, self.conv1, self.conv2, self.conv3):
            h = act(conv(h))
        return self.conv4(h).squeeze(1)


class SymAETorch(nn.Module):
    """Twin of ``seisjax.symae.model.SymAE`` (same layers, parameter count and forward function; a
    test loads the Flax parameters and compares). Input ``x (B, ntau, nt)``, ``mask (B, ntau)``."""

    def __init__(self, nt=192, p=30, q=30, leak=0.1, use_shifts=True, shift_unit=0.0, max_shift=0.0,
                 decoder_logvar_init=1.0, sample_coherent=True):
        super().__init__()
        if nt <= 0 or nt % 16:
            raise ValueError(f"symae twin: nt = {nt} must be a positive multiple of 16")
        self.nt, self.p, self.q, self.leak = nt, p, q, leak
        self.use_shifts, self.max_shift, self.sample_coherent = use_shifts, max_shift, sample_coherent
        self.shift_unit = float(shift_unit) if shift_unit > 0 else nt / 2.0
        self.coherent_encoder = _TraceEncoderTorch(nt, p, leak, ("mean", "log_precision"))
        self.nuisance_encoder = _TraceEncoderTorch(nt, q, leak, ("mean", "logvar"))
        self.decoder = _SymAEDecoderTorch(nt, p + q, leak)
        if use_shifts:
            self.shift_network = nn.ModuleDict({"dense0": nn.Linear(nt, nt), "dense1": nn.Linear(nt, nt),
                                                "out": nn.Linear(nt, 1)})
            nn.init.zeros_(self.shift_network["out"].weight)   # every shift starts at 0, as in the Flax model
            nn.init.zeros_(self.shift_network["out"].bias)
        self.decoder_logvar = nn.Parameter(torch.tensor(float(decoder_logvar_init)))

    def predict_shifts(self, x):
        if not self.use_shifts:
            return torch.zeros(x.shape[:-1], dtype=x.dtype)
        act = lambda h: nn.functional.leaky_relu(h, self.leak)  # noqa: E731
        net = self.shift_network
        shifts = net["out"](act(net["dense1"](act(net["dense0"](x))))).squeeze(-1) * self.shift_unit
        if self.max_shift > 0:
            shifts = self.max_shift * torch.tanh(shifts / self.max_shift)
        return shifts

    @staticmethod
    def pool_gaussians(mean, log_precision, valid):
        """Product of the valid traces' Gaussians over axis -2 (precision-weighted mean, summed
        precision, in log space); a datapoint without valid traces gets the standard normal."""
        valid = valid[..., None]
        any_valid = valid.any(dim=-2)
        lp = torch.where(valid, log_precision, -torch.inf)
        lp = torch.where(any_valid[..., None], lp, 0.0)   # no all -inf rows (NaN gradients)
        weights = torch.softmax(lp, dim=-2)
        pooled_mean = torch.sum(weights * torch.where(valid, mean, 0.0), dim=-2)
        pooled_lp = torch.logsumexp(lp, dim=-2)
        return torch.where(any_valid, pooled_mean, 0.0), torch.where(any_valid, pooled_lp, 0.0)

    def forward(self, x, mask=None, *, sample=False, noise=None):
        """``x (B, ntau, nt)`` -> the Flax model's output dict (same keys). ``sample=True`` samples the
        codes, with ``noise = (eps_coherent (B, p), eps_nuisance (B, ntau, q))`` when given (standard
        normal draws), else drawn here (coherent first)."""
        batch, ntau, nt = x.shape
        valid = torch.ones((batch, ntau), dtype=torch.bool) if mask is None else mask > 0
        shifts = self.predict_shifts(x)
        aligned = fourier_shift_torch(x, -shifts)
        flat = aligned.reshape(batch * ntau, nt)
        trace_mean, trace_lp = (h.reshape(batch, ntau, self.p) for h in self.coherent_encoder(flat))
        n_mean, n_logvar = (h.reshape(batch, ntau, self.q) for h in self.nuisance_encoder(flat))
        c_mean, c_lp = self.pool_gaussians(trace_mean, trace_lp, valid)
        c, n = c_mean, n_mean
        if sample:
            eps_c, eps_n = noise if noise is not None else (torch.randn_like(c_mean), torch.randn_like(n_mean))
            if self.sample_coherent:
                c = c + torch.exp(-0.5 * c_lp) * eps_c
            n = n + torch.exp(0.5 * n_logvar) * eps_n
        codes = torch.cat([c[:, None, :].expand(batch, ntau, self.p), n], dim=-1)
        decoded = self.decoder(codes.reshape(batch * ntau, self.p + self.q)).reshape(batch, ntau, nt)
        return {
            "reconstruction": fourier_shift_torch(decoded, shifts), "reconstruction_aligned": decoded,
            "aligned": aligned, "shifts": shifts, "shift_unit": self.shift_unit,
            "coherent": {"mean": c_mean, "log_precision": c_lp, "sample": c, "trace_mean": trace_mean,
                         "trace_log_precision": trace_lp},
            "nuisance": {"mean": n_mean, "logvar": n_logvar, "sample": n},
            "decoder_logvar": self.decoder_logvar,
        }


def symae_loss_torch(outputs, x, mask=None, *, gamma=100.0, beta_nuisance=1.0, beta_coherent=1.0,
                     shift_penalty="norm"):
    """Twin of ``seisjax.symae.model.symae_loss``: ``(loss, terms)`` with the same terms."""
    valid = torch.ones(x.shape[:2], dtype=x.dtype) if mask is None else (mask > 0).to(x.dtype)
    err = torch.where(valid[..., None] > 0, x - outputs["reconstruction"], 0.0)
    logvar = outputs["decoder_logvar"]
    nll = torch.sum(valid[..., None] * 0.5 * (_LOG_2PI + logvar + err.square() * torch.exp(-logvar)))
    nuisance, coherent = outputs["nuisance"], outputs["coherent"]
    kl_n = 0.5 * torch.sum(torch.exp(nuisance["logvar"]) + nuisance["mean"].square() - 1.0 - nuisance["logvar"], -1)
    kl_c = 0.5 * torch.sum(torch.exp(-coherent["log_precision"]) + coherent["mean"].square() - 1.0
                           + coherent["log_precision"])
    shift_sq = torch.sum(torch.where(valid > 0, outputs["shifts"] / outputs["shift_unit"], 0.0).square())
    n_traces = torch.clamp(valid.sum(), min=1.0)
    if shift_penalty == "norm":   # sqrt with a zero (sub)gradient at 0, where every shift starts
        positive = shift_sq > 0
        penalty = torch.where(positive, torch.sqrt(torch.where(positive, shift_sq, 1.0)), 0.0)
    elif shift_penalty == "mean_square":
        penalty = shift_sq
    else:
        raise ValueError(f"symae_loss_torch: shift_penalty = {shift_penalty!r}; expected 'norm' or 'mean_square'")
    terms = {"nll": nll / n_traces, "kl_nuisance": beta_nuisance * torch.sum(valid * kl_n) / n_traces,
             "kl_coherent": beta_coherent * kl_c / n_traces, "shift": gamma * penalty / n_traces}
    loss = terms["nll"] + terms["kl_nuisance"] + terms["kl_coherent"] + terms["shift"]
    terms["mse"] = torch.sum(err.square()) / torch.clamp(valid.sum() * x.shape[-1], min=1.0)
    terms["shift_rms"] = outputs["shift_unit"] * torch.sqrt(shift_sq / n_traces)
    return loss, terms


def symae(model_kwargs):
    # The bench passes the model's kwargs only; the loss uses symae_loss's defaults, which are the
    # experiment's (gamma 100, beta 1, "norm"): they change values, not the cost of a step.
    module = SymAETorch(**model_kwargs)

    def loss_fn(module, batch):
        x = torch.from_numpy(np.asarray(batch["x"], dtype=np.float32))
        mask = torch.from_numpy(np.asarray(batch["mask"], dtype=np.float32)) if "mask" in batch else None
        x, mask = (None if t is None else t.to(device_of(module)) for t in (x, mask))
        return symae_loss_torch(module(x, mask, sample=True), x, mask)[0]

    return module, loss_fn


def flax_symae_to_torch(module: SymAETorch, params) -> dict:
    """A Flax SymAE's ``params`` (or a pytree shaped like them, e.g. gradients) as the twin's
    state dict: conv kernels (k, in, out) -> (out, in, k), dense (in, out) -> (out, in), and the
    trunk's dense kernel reordered from Flax's (length, channel) flattening to (channel, length)."""
    out = {}

    def conv(name, src):
        out[f"{name}.weight"] = torch.from_numpy(np.asarray(src["kernel"]).transpose(2, 1, 0).copy())
        out[f"{name}.bias"] = torch.from_numpy(np.asarray(src["bias"]).copy())

    def dense(name, src, kernel=None):
        kernel = np.asarray(src["kernel"]) if kernel is None else kernel
        out[f"{name}.weight"] = torch.from_numpy(kernel.T.copy())
        out[f"{name}.bias"] = torch.from_numpy(np.asarray(src["bias"]).copy())

    for enc, heads in (("coherent_encoder", ("mean", "log_precision")), ("nuisance_encoder", ("mean", "logvar"))):
        trunk = params[enc]["trunk"]
        for i in range(4):
            conv(f"{enc}.conv{i}", trunk[f"conv{i}"])
        kernel = np.asarray(trunk["dense"]["kernel"])
        length = module.nt // 16
        kernel = kernel.reshape(length, 50, -1).transpose(1, 0, 2).reshape(50 * length, -1)
        dense(f"{enc}.dense", trunk["dense"], kernel)
        for head in heads:
            dense(f"{enc}.heads.{head}", params[enc][head])
    dec = params["decoder"]
    dense("decoder.dense0", dec["dense0"])
    dense("decoder.dense1", dec["dense1"])
    for i in range(5):
        conv(f"decoder.conv{i}", dec[f"conv{i}"])
    if module.use_shifts:
        for name in ("dense0", "dense1", "out"):
            dense(f"shift_network.{name}", params["shift_network"][name])
    out["decoder_logvar"] = torch.from_numpy(np.asarray(params["decoder_logvar"], dtype=np.float32).copy())
    return out


def load_flax_symae(module: SymAETorch, params) -> SymAETorch:
    """Copy a Flax SymAE's parameters into the twin (every parameter, strictly)."""
    module.load_state_dict(flax_symae_to_torch(module, params), strict=True)
    return module


#: model name -> twin builder (seisjax.bench.load_torch_twins)
TWINS = {"symae": symae}
