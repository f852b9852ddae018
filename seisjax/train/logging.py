"""Watching a run: progress bar, ``metrics.jsonl``, TensorBoard events, loss figure, NaN guard.

Only the first process of a multi-host run writes; the others keep the same calls as no-ops.

``metrics.jsonl`` has one JSON object per line: training records (``"kind": "train"``, every loss
term, ``lr``, ``grad_norm``, ``param_norm``, ``update_norm``, ``examples_per_s``), evaluation
records (``"kind": "eval"``) and one ``"kind": "compile"`` record with the compile time, which is
kept out of the throughput numbers.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from matplotlib.figure import Figure
from tqdm import tqdm

__all__ = ["NonFiniteError", "check_finite", "MetricLogger", "read_metrics", "plot_history"]


class NonFiniteError(FloatingPointError):
    """A loss term or the gradient norm became NaN or inf; names the step and the terms."""

    def __init__(self, step: int, terms: dict[str, float]):
        self.step, self.terms = step, terms
        listed = ", ".join(f"{k}={v}" for k, v in terms.items())
        super().__init__(f"non-finite values at step {step}: {listed}. Training stopped; the last "
                         "checkpoint before this step is kept. Lower the learning rate, enable "
                         "optim.clip_norm, or check the input data.")


def check_finite(metrics: dict[str, float], step: int, keys=None):
    """Raise NonFiniteError when any of ``keys`` (default: every metric) is NaN or inf.

    The loss terms are listed first so that the message names the term where it started."""
    keys = list(metrics) if keys is None else keys
    bad = {k: metrics[k] for k in keys if k in metrics and not math.isfinite(float(metrics[k]))}
    if bad:
        raise NonFiniteError(step, bad)


def read_metrics(workdir: str | os.PathLike, kind: str | None = "train") -> list[dict]:
    """Records of ``<workdir>/metrics.jsonl`` (of one ``kind``, or all with None)."""
    path = Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]


def plot_history(records: list[dict], path: str | os.PathLike, eval_records: list[dict] = ()) -> Path:
    """Loss terms and learning rate against step, as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = [r["step"] for r in records]
    terms = [k for k in records[0] if k.startswith("train/") and k not in (
        "train/loss", "train/lr", "train/grad_norm", "train/param_norm", "train/update_norm")] if records else []
    # The total first; its terms only when there are several (a single term is the total itself).
    terms = ["train/loss"] + (terms if len(terms) > 1 else []) if records else []
    fig = Figure(figsize=(7, 6))
    ax_loss, ax_lr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for key in terms:
        values = [r.get(key, math.nan) for r in records]
        ax_loss.plot(steps, values, label=key.removeprefix("train/"))
    pts = [(r["step"], r["eval/loss"]) for r in eval_records if "eval/loss" in r]
    if pts:
        ax_loss.plot(*zip(*pts, strict=True), "o--", label="eval loss")
    positive = all(r.get(k, 1.0) > 0 for r in records for k in terms) and all(v > 0 for _, v in pts)
    if records and positive:
        ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize=8)
    ax_loss.grid(alpha=0.3)
    ax_lr.plot(steps, [r.get("train/lr", math.nan) for r in records], color="k")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported without PyTorch: tensorboardX imports torch at load
    time (only to recognise its tensors), which costs seconds per run when torch is installed."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        from tensorboardX import SummaryWriter  # here, not at the top: see the docstring

        return SummaryWriter
    sys.modules["torch"] = None  # makes `import torch` fail inside tensorboardX's optional import
    try:
        from tensorboardX import SummaryWriter  # here, not at the top: see the docstring
    finally:
        del sys.modules["torch"]
    return SummaryWriter


class MetricLogger:
    """Writes metrics to ``metrics.jsonl``, TensorBoard (``<workdir>/tensorboard``) and the loss
    figure (``<workdir>/figures/loss.png``), and drives a tqdm bar with step, epoch, loss and ETA.

    On resume from step ``start_step``, records of later steps (from the interrupted run, past its
    last checkpoint) are dropped so that the history reads as one run."""

    def __init__(self, workdir: str | os.PathLike, *, total_steps: int, start_step: int = 0,
                 enabled: bool = True, tensorboard: bool = True, progress: bool = True,
                 figure_every_steps: int = 0):
        self.workdir = Path(workdir)
        self.enabled = enabled
        self.figure_every_steps = figure_every_steps
        self._last_figure_step = start_step
        self._history: list[dict] = []
        self._eval_history: list[dict] = []
        self._tb = None
        self._bar = None
        if not enabled:
            return
        self.path = self.workdir / "metrics.jsonl"
        self.workdir.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.workdir, kind=None) if r.get("step", 0) <= start_step]
        with open(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        self._history = [r for r in kept if r.get("kind") == "train"]
        self._eval_history = [r for r in kept if r.get("kind") == "eval"]
        self._file = open(self.path, "a", buffering=1)
        if tensorboard:
            SummaryWriter = _summary_writer_class()
            self._tb = SummaryWriter(logdir=str(self.workdir / "tensorboard"), purge_step=start_step or None)
        if progress:
            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                             dynamic_ncols=True, mininterval=0.5)

    def write(self, step: int, kind: str, values: dict, **extra):
        """Append one record; ``values`` are scalars (written as floats under ``<kind>/<name>``)."""
        if not self.enabled:
            return
        record = {"step": int(step), "kind": kind, **extra}
        record.update({f"{kind}/{k}": float(v) for k, v in values.items()})
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{kind}/{k}", float(v), int(step))
            for k, v in extra.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(f"{kind}/{k}", float(v), int(step))
        if kind == "train":
            self._history.append(record)
            if self.figure_every_steps and step - self._last_figure_step >= self.figure_every_steps:
                self.plot()
        elif kind == "eval":
            self._eval_history.append(record)

    def progress(self, step: int, epoch: int | None = None, loss: float | None = None):
        """Move the bar to ``step`` and show epoch and loss."""
        if self._bar is None:
            return
        self._bar.update(step - self._bar.n)
        post = {}
        if epoch is not None:
            post["epoch"] = epoch
        if loss is not None:
            post["loss"] = f"{loss:.4g}"
        if post:
            self._bar.set_postfix(post, refresh=False)

    def message(self, text: str):
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def plot(self) -> Path | None:
        if not self.enabled or not self._history:
            return None
        self._last_figure_step = self._history[-1]["step"]
        return plot_history(self._history, self.workdir / "figures" / "loss.png", self._eval_history)

    def close(self):
        if not self.enabled:
            return
        self.plot()
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        self._file.close()
        self.enabled = False
