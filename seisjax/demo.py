"""The main job: what the README's first command runs on the built-in synthetic data.

For now it writes the two synthetic datasets (``teleseismic-p`` for SymAE, ``local`` for the
clustering, VAE and LSTM experiments) with their ground truth and renders an overview of each.
"""

from __future__ import annotations

import time
from pathlib import Path


def run(workdir: str | Path, *, events: int | None = None, seed: int = 0, overwrite: bool = False) -> dict:
    """Synthesise both scenarios into ``workdir/data/<scenario>`` and summarise them; returns the
    paths of what was written."""
    from seisjax.data.dataset import describe, format_summary
    from seisjax.data.synthetic import synthesize

    workdir = Path(workdir)
    results = {}
    for scenario in ("teleseismic-p", "local"):
        out = workdir / "data" / scenario
        started = time.perf_counter()
        synthesize(scenario, out, events=events, seed=seed, overwrite=overwrite, figure=True, progress=True)
        summary = describe(out, figure=workdir / "figures" / f"{scenario}_overview.png")
        print(f"\n== {scenario} ({time.perf_counter() - started:.0f} s)\n{format_summary(summary)}")
        results[scenario] = {"dataset": str(out), "figures": sorted(str(p) for p in (out / "figures").glob("*.png")),
                             "overview": summary["figure"], "truth": str(out / "truth.h5")}
    print(f"\nResults are in {workdir}: datasets under data/, figures under figures/ and data/*/figures/.")
    return results
