"""PyTorch twins of seisjax's models, for throughput ratios (``python -m seisjax bench``).

A twin has the same layers, widths, kernel sizes and parameter count as the Flax model (the bench
checks the count), the same loss and optimizer, and is fed the same batch; it runs eagerly, as
PyTorch users run it. Register one per model name in ``TWINS``:

    TWINS[name] = builder(model_kwargs: dict) -> (module: torch.nn.Module, loss_fn(module, batch) -> loss)

``batch`` is the dict of numpy arrays the seisjax task yields (channels-last); the loss function
converts what it needs. Imported only by the bench: torch is an optional extra.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

TWINS = {}


def register(name):
    def decorator(builder):
        TWINS[name] = builder
        return builder

    return decorator


# ----------------------------------------------------------------------------- conv_ae
class ConvAutoencoderTorch(nn.Module):
    """Twin of ``seisjax.conv_ae.model.ConvAutoencoder``: stride-2 convolutions, dense latent,
    (repeat x2, convolution) decoder. Input (B, C, W).

    It computes the same function as the Flax model given the same weights (a test checks it):
    stride-2 convolutions pad like XLA's "SAME" ((k - 2) // 2 before, the rest after), and the
    dense layers see features in Flax's (length, channel) order."""

    def __init__(self, channels=(16, 32, 64), kernel_size=7, latent_dim=32, out_channels=3, length=512):
        super().__init__()
        self.channels, self.length = tuple(channels), length
        pad = kernel_size // 2
        self.same_stride2 = ((kernel_size - 2) // 2, kernel_size - 2 - (kernel_size - 2) // 2)
        widths_in = (out_channels,) + self.channels[:-1]
        self.encoder = nn.ModuleList(nn.Conv1d(i, o, kernel_size, stride=2)
                                     for i, o in zip(widths_in, self.channels, strict=True))
        self.bottom = length // 2 ** len(self.channels)
        self.to_latent = nn.Linear(self.bottom * self.channels[-1], latent_dim)
        self.from_latent = nn.Linear(latent_dim, self.bottom * self.channels[-1])
        widths = list(self.channels[-2::-1]) + [self.channels[0]]
        ins = [self.channels[-1]] + widths[:-1]
        self.decoder = nn.ModuleList(nn.Conv1d(i, o, kernel_size, padding=pad) for i, o in zip(ins, widths, strict=True))
        self.to_output = nn.Conv1d(widths[-1], out_channels, kernel_size, padding=pad)
        self.act = nn.GELU(approximate="tanh")

    def forward(self, x):
        for conv in self.encoder:
            x = self.act(conv(nn.functional.pad(x, self.same_stride2)))
        z = self.to_latent(x.transpose(1, 2).flatten(1))
        x = self.act(self.from_latent(z)).view(-1, self.bottom, self.channels[-1]).transpose(1, 2)
        for conv in self.decoder:
            x = self.act(conv(torch.repeat_interleave(x, 2, dim=2)))
        return self.to_output(x)


@register("conv_ae")
def conv_ae(model_kwargs):
    module = ConvAutoencoderTorch(**model_kwargs)

    def loss_fn(module, batch):
        x = torch.from_numpy(np.ascontiguousarray(np.transpose(batch["x"], (0, 2, 1))))
        return torch.mean((module(x) - x) ** 2)

    return module, loss_fn


def load_flax_conv_ae(module: ConvAutoencoderTorch, params) -> ConvAutoencoderTorch:
    """Copy a Flax ConvAutoencoder's parameters into the twin (kernels (k, in, out) -> (out, in, k),
    dense (in, out) -> (out, in))."""
    def conv(dst, src):
        dst.weight.data = torch.from_numpy(np.asarray(src["kernel"]).transpose(2, 1, 0).copy())
        dst.bias.data = torch.from_numpy(np.asarray(src["bias"]).copy())

    def dense(dst, src):
        dst.weight.data = torch.from_numpy(np.asarray(src["kernel"]).T.copy())
        dst.bias.data = torch.from_numpy(np.asarray(src["bias"]).copy())

    enc, dec = params["encoder"], params["decoder"]
    for i, layer in enumerate(module.encoder):
        conv(layer, enc[f"conv{i}"])
    dense(module.to_latent, enc["to_latent"])
    dense(module.from_latent, dec["from_latent"])
    for i, layer in enumerate(module.decoder):
        conv(layer, dec[f"conv{i}"])
    conv(module.to_output, dec["to_output"])
    return module


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


@register("symae")
def symae(model_kwargs):
    # The bench passes the model's kwargs only; the loss uses symae_loss's defaults, which are the
    # experiment's (gamma 100, beta 1, "norm"): they change values, not the cost of a step.
    module = SymAETorch(**model_kwargs)

    def loss_fn(module, batch):
        x = torch.from_numpy(np.asarray(batch["x"], dtype=np.float32))
        mask = torch.from_numpy(np.asarray(batch["mask"], dtype=np.float32)) if "mask" in batch else None
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


# ----------------------------------------------------------------------------- mousavi_polarity
class _DECTwin(nn.Module):
    """A DEC network twin: ``encode`` and ``decode`` from the subclass, ``forward(x) -> (x_hat, z)``
    as the Flax models' ``__call__``."""

    def forward(self, x):
        z = self.encode(x)
        return self.decode(z), z


class MousaviPolarityTorch(_DECTwin):
    """Twin of ``seisjax.dec.model.MousaviPolarity`` (same layers, parameter count, cluster
    centres and function; a test loads the Flax parameters and compares). Input ``(B, C, L)``.

    Flax's stride-1 "SAME" convolution pads ``(k - 1) // 2`` before and the rest after, which for
    the odd kernels of this network is PyTorch's ``padding=k // 2``; an even kernel gets the
    explicit asymmetric pad. The embedding is flattened in Flax's (length, channel) order."""

    def __init__(self, length=32, out_channels=1, channels=(8, 4, 2, 1), kernels=(11, 9, 3, 3), activation="tanh",
                 embedding_activation="", n_clusters=2):
        super().__init__()
        channels, kernels = tuple(channels), tuple(kernels)
        if len(channels) != len(kernels):
            raise ValueError(f"mousavi_polarity twin: {len(channels)} channels but {len(kernels)} kernels")
        if length % 2 ** len(channels):
            raise ValueError(f"mousavi_polarity twin: length {length} is not divisible by {2 ** len(channels)}")
        acts = {"tanh": torch.tanh, "relu": torch.relu, "elu": nn.functional.elu, "linear": lambda h: h}
        for name in (activation, embedding_activation or activation):
            if name not in acts:
                raise ValueError(f"mousavi_polarity twin: unknown activation {name!r}")
        self.act, self.channels = acts[activation], channels
        # the last encoder level's activation ("" = the others'), as the Flax model's embedding_activation
        self.encoder_acts = [acts[activation]] * (len(channels) - 1) + [acts[embedding_activation or activation]]
        self.pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernels]
        self.encoder = nn.ModuleList(nn.Conv1d(i, o, k) for i, o, k in
                                     zip((out_channels,) + channels[:-1], channels, kernels, strict=True))
        widths = list(channels[-2::-1]) + [out_channels]
        self.decoder = nn.ModuleList(nn.Conv1d(i, o, k) for i, o, k in
                                     zip((channels[-1],) + tuple(widths[:-1]), widths, kernels[::-1], strict=True))
        self.decoder_pads = self.pads[::-1]
        self.embedding_dim = length // 2 ** len(channels) * channels[-1]
        self.centres = nn.Parameter(torch.randn(n_clusters, self.embedding_dim))

    def encode(self, x):
        for conv, pad, act in zip(self.encoder, self.pads, self.encoder_acts, strict=True):
            x = nn.functional.max_pool1d(act(conv(nn.functional.pad(x, pad))), 2)
        return x.transpose(1, 2).flatten(1)

    def decode(self, z):
        x = z.view(z.shape[0], -1, self.channels[-1]).transpose(1, 2)
        for i, (conv, pad) in enumerate(zip(self.decoder, self.decoder_pads, strict=True)):
            x = conv(nn.functional.pad(torch.repeat_interleave(x, 2, dim=2), pad))
            if i < len(self.decoder) - 1:   # linear output
                x = self.act(x)
        return x


def soft_assignment_torch(z, centres, alpha=1.0):
    """Twin of ``seisjax.metrics.clustering.soft_assignment`` (Student's t, log-space softmax)."""
    d2 = torch.sum((z[:, None, :] - centres[None, :, :]) ** 2, -1)
    return torch.softmax(-(alpha + 1.0) / 2.0 * torch.log1p(d2 / alpha), dim=1)


def target_distribution_torch(q):
    """Twin of ``clustering.target_distribution``: ``p ∝ q^2 / f_j`` over all rows, per-row normalised."""
    weight = q ** 2 / q.sum(0, keepdim=True)
    return weight / weight.sum(1, keepdim=True)


def kl_divergence_torch(p, q, eps=1e-12):
    """Twin of ``clustering.kl_divergence``: ``KL(P || Q)`` per row (0 log 0 = 0)."""
    terms = p * (torch.log(torch.clamp(p, min=eps)) - torch.log(torch.clamp(q, min=eps)))
    return torch.where(p > 0, terms, torch.zeros_like(terms)).sum(1)


def dec_loss_torch(module, x, target=None, *, variant="dec", gamma=0.1, alpha=1.0):
    """The DEC task's loss for the twin: MSE without a target (pretraining); with one, ``KL(P || Q)``
    (``variant="dec"``) or ``MSE + gamma * KL`` (``"idec"``), as ``seisjax.dec.task.DECTask.loss``."""
    recon, z = module(x)
    mse = torch.mean((recon - x) ** 2)
    if target is None:
        return mse
    kl = kl_divergence_torch(target, soft_assignment_torch(z, module.centres, alpha)).mean()
    return kl if variant == "dec" else mse + gamma * kl


@register("mousavi_polarity")
def mousavi_polarity(model_kwargs):
    # The bench passes the model's kwargs only: a batch with a "target" (the DEC stage) gets the
    # DEC loss with the experiment's defaults (variant "dec", alpha 1), otherwise pretraining's MSE.
    module = MousaviPolarityTorch(**model_kwargs)

    def loss_fn(module, batch):
        x = torch.from_numpy(np.ascontiguousarray(np.transpose(batch["x"], (0, 2, 1)), dtype=np.float32))
        target = torch.from_numpy(np.array(batch["target"], np.float32)) if "target" in batch else None
        return dec_loss_torch(module, x, target)

    return module, loss_fn


def flax_mousavi_polarity_to_torch(params) -> dict:
    """A Flax MousaviPolarity's ``params`` (or a pytree shaped like them) as the twin's state dict:
    conv kernels (k, in, out) -> (out, in, k)."""
    out = {"centres": torch.from_numpy(np.array(params["centres"], np.float32))}
    for flax_prefix, torch_prefix in (("enc", "encoder"), ("dec", "decoder")):
        names = sorted((n for n in params if n.startswith(flax_prefix) and n[len(flax_prefix):].isdigit()),
                       key=lambda n: int(n[len(flax_prefix):]))
        for i, name in enumerate(names):
            kernel = np.asarray(params[name]["kernel"]).transpose(2, 1, 0)   # (k, in, out) -> (out, in, k)
            out[f"{torch_prefix}.{i}.weight"] = torch.from_numpy(kernel.copy())
            out[f"{torch_prefix}.{i}.bias"] = torch.from_numpy(np.array(params[name]["bias"]))
    return out


def load_flax_mousavi_polarity(module: MousaviPolarityTorch, params) -> MousaviPolarityTorch:
    """Copy a Flax MousaviPolarity's parameters into the twin (every parameter, strictly)."""
    module.load_state_dict(flax_mousavi_polarity_to_torch(params), strict=True)
    return module


def _flax_conv2d_state(params, flax_prefix: str, torch_prefix: str) -> dict:
    """Numbered Flax 2-D convolutions ``<flax_prefix>0, 1, ...`` as ``<torch_prefix>.<i>.weight/bias``:
    kernels (kh, kw, in, out) -> (out, in, kh, kw)."""
    names = sorted((n for n in params if n.startswith(flax_prefix) and n[len(flax_prefix):].isdigit()),
                   key=lambda n: int(n[len(flax_prefix):]))
    out = {}
    for i, name in enumerate(names):
        out[f"{torch_prefix}.{i}.weight"] = torch.from_numpy(np.asarray(params[name]["kernel"]).transpose(3, 2, 0, 1).copy())
        out[f"{torch_prefix}.{i}.bias"] = torch.from_numpy(np.array(params[name]["bias"], np.float32))
    return out


def _same_pad2d(size_hw, kernel_hw, stride: int) -> tuple[int, int, int, int]:
    """XLA's "SAME" padding of an NCHW map as ``F.pad``'s (left, right, top, bottom): the extra pixel after."""
    pads = []
    for n, k in zip(size_hw, kernel_hw, strict=True):
        total = max((-(-n // stride) - 1) * stride + k - n, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return left, right, top, bottom


# ----------------------------------------------------------------------------- mousavi_distance
class MousaviDistanceTorch(_DECTwin):
    """Twin of ``seisjax.dec.model.MousaviDistance`` (same layers, parameter count, centres and
    function). Input ``(B, C, F, T)``; the embedding is flattened in Flax's (F, T, channel) order."""

    def __init__(self, input_shape=(16, 48), out_channels=1, channels=(4, 2, 1), kernel=(3, 3), activation="tanh",
                 embedding_activation="", n_clusters=2):
        super().__init__()
        channels, kernel = tuple(channels), tuple(kernel)
        factor = 2 ** len(channels)
        if len(input_shape) != 2 or any(side % factor for side in input_shape):
            raise ValueError(f"mousavi_distance twin: input_shape {tuple(input_shape)} must be two sides "
                             f"divisible by {factor}")
        acts = {"tanh": torch.tanh, "relu": torch.relu, "elu": nn.functional.elu, "linear": lambda h: h}
        for name in (activation, embedding_activation or activation):
            if name not in acts:
                raise ValueError(f"mousavi_distance twin: unknown activation {name!r}")
        self.act = acts[activation]
        self.encoder_acts = [acts[activation]] * (len(channels) - 1) + [acts[embedding_activation or activation]]
        self.pad = _same_pad2d(input_shape, kernel, 1)   # stride 1: the same for every level
        self.encoder = nn.ModuleList(nn.Conv2d(i, o, kernel) for i, o in
                                     zip((out_channels,) + channels[:-1], channels, strict=True))
        widths = list(channels[-2::-1]) + [out_channels]
        self.decoder = nn.ModuleList(nn.Conv2d(i, o, kernel) for i, o in
                                     zip((channels[-1],) + tuple(widths[:-1]), widths, strict=True))
        self.code_shape = (input_shape[0] // factor, input_shape[1] // factor, channels[-1])
        self.centres = nn.Parameter(torch.randn(n_clusters, int(np.prod(self.code_shape))))

    def encode(self, x):
        for conv, act in zip(self.encoder, self.encoder_acts, strict=True):
            x = nn.functional.max_pool2d(act(conv(nn.functional.pad(x, self.pad))), 2)
        return x.permute(0, 2, 3, 1).flatten(1)

    def decode(self, z):
        x = z.view(z.shape[0], *self.code_shape).permute(0, 3, 1, 2)
        for i, conv in enumerate(self.decoder):
            x = conv(nn.functional.pad(nn.functional.interpolate(x, scale_factor=2, mode="nearest"), self.pad))
            if i < len(self.decoder) - 1:   # linear output
                x = self.act(x)
        return x


def flax_mousavi_distance_to_torch(params) -> dict:
    """A Flax MousaviDistance's ``params`` (or a pytree shaped like them) as the twin's state dict."""
    return {"centres": torch.from_numpy(np.array(params["centres"], np.float32)),
            **_flax_conv2d_state(params, "enc", "encoder"), **_flax_conv2d_state(params, "dec", "decoder")}


# ----------------------------------------------------------------------------- zclust
class ZClustTorch(_DECTwin):
    """Twin of ``seisjax.dec.model.ZClust``: stride-2 3x3 "SAME" convolutions (XLA's padding, the
    extra pixel after), leaky ReLU, Linear embedding; the decoder resizes (nearest, pixel centres,
    as ``jax.image.resize``) then convolves. Input ``(B, C, F, T)``; flattening in Flax's order."""

    def __init__(self, input_shape=(87, 67), out_channels=1, channels=(8, 16, 32, 64, 128), embedding_dim=9,
                 negative_slope=0.02, n_clusters=2):
        super().__init__()
        if len(input_shape) != 2:
            raise ValueError(f"zclust twin: input_shape {tuple(input_shape)} must be (frequencies, times)")
        channels = tuple(channels)
        self.sides = [tuple(input_shape)]
        for _ in channels:
            self.sides.append(tuple(-(-s // 2) for s in self.sides[-1]))
        self.channels, self.negative_slope = channels, negative_slope
        self.encoder = nn.ModuleList(nn.Conv2d(i, o, 3, stride=2) for i, o in
                                     zip((out_channels,) + channels[:-1], channels, strict=True))
        bottom = self.sides[-1][0] * self.sides[-1][1] * channels[-1]
        self.embed = nn.Linear(bottom, embedding_dim)
        self.unembed = nn.Linear(embedding_dim, bottom)
        widths = list(channels[-2::-1]) + [out_channels]
        self.decoder = nn.ModuleList(nn.Conv2d(i, o, 3, padding=1) for i, o in
                                     zip((channels[-1],) + tuple(widths[:-1]), widths, strict=True))
        self.centres = nn.Parameter(torch.randn(n_clusters, embedding_dim))

    def _act(self, x):
        return nn.functional.leaky_relu(x, self.negative_slope)

    def encode(self, x):
        for conv, side in zip(self.encoder, self.sides, strict=False):
            x = self._act(conv(nn.functional.pad(x, _same_pad2d(side, (3, 3), 2))))
        return self.embed(x.permute(0, 2, 3, 1).flatten(1))

    def decode(self, z):
        h, w = self.sides[-1]
        x = self._act(self.unembed(z)).view(z.shape[0], h, w, self.channels[-1]).permute(0, 3, 1, 2)
        for i, conv in enumerate(self.decoder):
            x = conv(nn.functional.interpolate(x, size=self.sides[-2 - i], mode="nearest-exact"))
            if i < len(self.decoder) - 1:   # linear output
                x = self._act(x)
        return x


def flax_zclust_to_torch(params) -> dict:
    """A Flax ZClust's ``params`` (or a pytree shaped like them) as the twin's state dict (dense
    kernels (in, out) -> (out, in))."""
    out = {"centres": torch.from_numpy(np.array(params["centres"], np.float32)),
           **_flax_conv2d_state(params, "enc", "encoder"), **_flax_conv2d_state(params, "dec", "decoder")}
    for name in ("embed", "unembed"):
        out[f"{name}.weight"] = torch.from_numpy(np.asarray(params[name]["kernel"]).T.copy())
        out[f"{name}.bias"] = torch.from_numpy(np.array(params[name]["bias"], np.float32))
    return out


def _dec_twin(module_class):
    """A DEC twin builder for a 2-D network: pretraining's MSE, or the DEC loss when the batch has
    a "target" (as ``mousavi_polarity``); NHWC batches go in as NCHW."""
    def builder(model_kwargs):
        module = module_class(**model_kwargs)

        def loss_fn(module, batch):
            x = torch.from_numpy(np.ascontiguousarray(np.transpose(batch["x"], (0, 3, 1, 2)), dtype=np.float32))
            target = torch.from_numpy(np.array(batch["target"], np.float32)) if "target" in batch else None
            return dec_loss_torch(module, x, target)

        return module, loss_fn

    return builder


register("mousavi_distance")(_dec_twin(MousaviDistanceTorch))
register("zclust")(_dec_twin(ZClustTorch))
