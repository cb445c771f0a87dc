"""The PNG figures of a ``spikeff-bench`` report (matplotlib, Agg backend, imported on use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["write_figures"]


def _top_layer(le: dict[str, Any]) -> int:
    """The number of the top layer among a label-efficiency table's rows (0 if none)."""
    return max((int(r["representation"].split()[1]) for r in le["rows"] if r["representation"].startswith("layer ")),
               default=0)


def write_figures(report: dict[str, Any], raster: dict[str, Any] | None, out: Path) -> dict[str, str]:
    """Plot the frontier, BPTT's learning-rate choice, the spikeff curves, ED per layer, the probes
    and a spike raster, each where the report has it.

    Parameters
    ----------
    report : dict
        The report of :func:`~spikeff.bench.aggregate.build_report`.
    raster : dict or None
        Spikes of one test sample (spikeff seed 0), or None for no raster.
    out : Path
        Folder the PNG files are written into.

    Returns
    -------
    dict
        Figure name to file name (relative to ``out``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figs: dict[str, str] = {}

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        figs[name.removesuffix(".png")] = name

    def ci(a: dict[str, Any]) -> list[list[float]]:
        return [[a["median"] - a["ci95"][0]], [a["ci95"][1] - a["median"]]]

    models = list(report["cost_models"])
    fr = report["frontier"]["points"]
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4.2), squeeze=False)
    for ax, m in zip(axes[0], models):
        curve = sorted((p for p in fr if p["name"].startswith("spikeff n=")), key=lambda p: p["energy_pj"][m])
        if curve:
            ax.plot([p["energy_pj"][m] / 1e3 for p in curve], [p["accuracy"]["median"] for p in curve], "-",
                    color="C0", alpha=0.5)
        for i, p in enumerate(fr):
            ax.errorbar(p["energy_pj"][m] / 1e3, p["accuracy"]["median"], yerr=ci(p["accuracy"]), fmt="o",
                        capsize=3, color="C0" if p["family"] == "spikeff" else f"C{i % 9 + 1}", label=p["name"])
            ax.annotate(p["name"], (p["energy_pj"][m] / 1e3, p["accuracy"]["median"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        ax.set(xscale="log", xlabel=f"energy per inference (nJ, {m})", ylabel="test accuracy (median, 95 % CI)",
               title=m)
        ax.grid(alpha=0.3)
    save(fig, "frontier.png")

    sel = report["methods"].get("bptt", {}).get("selection")
    if sel:
        fig, ax = plt.subplots(figsize=(5, 4))
        for c in sel["curves"].values():
            ax.plot(range(1, len(c["holdout_accuracy"]) + 1), c["holdout_accuracy"], marker=".",
                    label=f"lr {c['lr']:g}" + (" (chosen)" if c["lr"] == sel["lr"] else ""))
        ax.set(xlabel="epoch", ylabel=f"held-out accuracy ({sel['n_holdout']} training samples)",
               title="BPTT: learning-rate choice on the training split")
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, "bptt_selection.png")

    for key, xlabel, fname in (("trials_curve", "trials n", "accuracy_vs_trials.png"),
                               ("noise_curve", "escape-noise temperature delta", "accuracy_vs_noise.png")):
        c = report.get(key)
        if not c:
            continue
        fig, ax = plt.subplots(figsize=(5, 4))
        med = [a["median"] for a in c["energy"]]
        ax.errorbar(c["x"], med, yerr=[[m - a["ci95"][0] for m, a in zip(med, c["energy"])],
                                       [a["ci95"][1] - m for m, a in zip(med, c["energy"])]],
                    marker="o", capsize=3, label="spikeff energy mode")
        if key == "trials_curve":
            ax.set_xscale("log", base=2)
        ax.set(xlabel=xlabel, ylabel="test accuracy (median, 95 % CI)", title=f"{report['dataset']}: {xlabel}")
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, fname)

    ed = report.get("ed_history")
    if ed and ed.get("epoch"):
        layers = [k for k in ed if k.startswith("layer")]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, term in zip(axes, ("consistency", "diversity")):
            for layer in layers:
                if term in ed[layer]:
                    ax.errorbar(ed["epoch"], ed[layer][term]["mean"], yerr=ed[layer][term]["std"], marker="o",
                                capsize=3, label=layer)
            ax.set(xlabel="epoch", ylabel=f"ED {term}", title=f"ED {term} per layer (mean over batches)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend()
        save(fig, "ed_per_layer.png")

    pr = report.get("probes")
    if pr and "trained" in pr:
        fig, ax = plt.subplots(figsize=(6, 4))
        names = ["input"] + [f"layer {k}" for k in range(1, len(pr["trained"]["mean"]))]
        for net in ("trained", "control"):
            if net in pr:
                ax.errorbar(range(len(names)), pr[net]["mean"], yerr=pr[net]["std"], marker="o", capsize=3,
                            label=f"spikeff {net}" if net == "trained" else "untrained control")
        ax.set_xticks(range(len(names)), names)
        ax.set(ylabel="linear probe accuracy (test)", title=f"{report['dataset']}: linear probe per layer")
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, "probes_per_layer.png")

    le = report.get("label_efficiency")
    if le:
        ks = le["labels_per_class"]
        fig, (ax, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2))
        for i, r in enumerate(le["rows"]):
            if r["representation"].startswith("layer ") and r["representation"] != f"layer {_top_layer(le)}":
                continue  # the lower layers are on the right
            xs = [j for j, k in enumerate(ks) if k in r["k"]]
            mean = [r["k"][ks[j]]["clean"]["mean"] for j in xs]
            std = [r["k"][ks[j]]["clean"]["std"] for j in xs]
            ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, color=f"C{i % 10}",
                        linestyle="--" if r["method"] in ("random", "seed control") else "-",
                        label=f"{r['method']} {r['representation']}")
        ax.set_xticks(range(len(ks)), ks)
        ax.set(xlabel="labelled training inputs per class", ylabel="test accuracy (mean ± std over draws, seeds)",
               title=f"{report['dataset']}: accuracy against labels")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        for method, style in (("spikeff", "-"), ("random", "--")):
            per_layer = [r for r in le["rows"] if r["method"] == method and r["representation"].startswith("layer ")]
            for j, k in enumerate(ks):
                if per_layer:
                    ax_l.plot(range(1, len(per_layer) + 1), [r["k"][k]["clean"]["mean"] for r in per_layer], style,
                              marker="o", color=f"C{j}", label=f"{'trained' if method == 'spikeff' else 'control'} "
                                                               f"{'all' if k == 'all' else 'k=' + k}")
        ax_l.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_l.set(xlabel="layer", ylabel="linear readout accuracy (test, clean)", title="per layer and labels per class")
        ax_l.grid(alpha=0.3)
        if ax_l.lines:  # a bench without spikeff has no layers
            ax_l.legend(fontsize=6)
        save(fig, "label_efficiency.png")

    if raster:
        fig, axes = plt.subplots(len(raster), 1, figsize=(7, 1.8 * len(raster)), sharex=True)
        for ax, (name, r) in zip(axes, raster.items()):
            ev = torch.tensor(r["events"], dtype=torch.float32).reshape(-1, 2)
            ax.scatter(ev[:, 0], ev[:, 1], s=2, marker="|", color="k")
            ax.set(ylabel=f"{name}\n({r['neurons']})", ylim=(-0.5, r["neurons"] - 0.5))
        axes[-1].set_xlabel("time bin")
        axes[0].set_title("spikeff: one test sample, one trial (seed 0)")
        save(fig, "spike_raster.png")
    return figs
