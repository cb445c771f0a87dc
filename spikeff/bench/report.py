"""The text outputs of ``spikeff-bench``: console and markdown tables, ``report.md``, the
README blocks regenerated from a report, and :func:`write_outputs`, which writes a run's
``report.json``, ``report.md`` and figures."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..fileio import atomic_write, write_json
from .figures import write_figures
from .settings import BENCH_MODES

__all__ = ["summary_table", "frontier_table", "matched_lines", "layer_table", "label_efficiency_table",
           "readme_block", "update_readme", "write_outputs"]


def _fmt_e(pj: float) -> str:
    return f"{pj / 1e6:.3g} uJ" if pj >= 1e6 else f"{pj / 1e3:.3g} nJ"


def _rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for name, e in report["methods"].items():
        if "readout_modes" in e:
            rows += [(f"{name}/{mode}", {**e, **e["readout_modes"][mode]}) for mode in BENCH_MODES]
        else:
            rows.append((name, e))
    return rows


def _signed(x: float) -> str:
    return f"{round(x, 3) + 0.0:+.3f}"  # no "-0.000"


def _fmt_acc(a: dict[str, Any]) -> str:
    lo, hi = a["ci95"]
    spread = f", seeds {a['min']:.3f}-{a['max']:.3f}" if len(a["per_seed"]) > 1 else ""
    return f"{a['median']:.3f} [{lo:.3f}, {hi:.3f}]{spread}"


def _table(head: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [head, *rows])


def summary_table(report: dict[str, Any], markdown: bool = False) -> str:
    """One row per method (and readout mode): accuracy with its interval, ops, energy, cost of training.

    Parameters
    ----------
    report : dict
        A bench report; a row per entry of its ``methods`` (spikeff and random: one per readout mode).
    markdown : bool
        A markdown table instead of aligned plain text.

    Returns
    -------
    str
        The table, in the order of ``methods``.
    """
    models = list(report["cost_models"])
    head = ["method", "accuracy [95 % CI]", "synops/inf", *[f"E {m}" for m in models], "train s",
            "inputs/s", "trial-samples/s", "peak MiB"]
    rows = []
    for name, e in _rows(report):
        opt = lambda k, f, e=e: "-" if e[k] is None else format(e[k], f)  # noqa: E731
        rows.append([name, _fmt_acc(e["accuracy"]), f"{e['synops_per_inference']:.3g}",
                     *[_fmt_e(e["energy_pj_per_inference"][m]) for m in models],
                     opt("train_seconds", ".1f"), opt("samples_per_second", ".1f"),
                     opt("trial_samples_per_second", ".1f"), f"{e['peak_memory_mib']:.0f}"])
    return _table(head, rows, markdown)


def frontier_table(report: dict[str, Any], markdown: bool = False) -> str:
    """The energy-accuracy operating points, cheapest first under the first cost model.

    Parameters
    ----------
    report : dict
        A bench report; a row per point of its ``frontier``.
    markdown : bool
        A markdown table instead of aligned plain text.

    Returns
    -------
    str
        The table, cheapest point first.
    """
    models = list(report["cost_models"])
    points = sorted(report["frontier"]["points"], key=lambda p: p["energy_pj"][models[0]])
    head = ["operating point", "accuracy [95 % CI]", "synops/inf", *[f"E {m}" for m in models]]
    rows = [[p["name"], _fmt_acc(p["accuracy"]), f"{p['synops']:.3g}", *[_fmt_e(p["energy_pj"][m]) for m in models]]
            for p in points]
    return _table(head, rows, markdown)


def matched_lines(report: dict[str, Any]) -> list[str]:
    """One sentence per cost model: the cheapest spikeff point that matches BPTT, and its energy ratio.

    Parameters
    ----------
    report : dict
        A bench report; read from its ``frontier.matched_bptt``.

    Returns
    -------
    list of str
        The sentences, empty where the report has no BPTT.
    """
    out = []
    for m, hit in report["frontier"]["matched_bptt"].items():
        if hit is None:
            out.append(f"{m}: no spikeff operating point reaches BPTT's median accuracy, even within noise.")
        else:
            out.append(f"{m}: {hit['point']} ({hit['accuracy']:.3f} vs BPTT {hit['bptt_accuracy']:.3f}; "
                       f"{hit['basis']}) costs {_fmt_e(hit['energy_pj'])} per inference, "
                       f"{hit['energy_vs_bptt']:.2f}x BPTT's {_fmt_e(hit['bptt_energy_pj'])}.")
    return out


def layer_table(report: dict[str, Any], markdown: bool = False) -> str:
    """Per stage (layers, then the head): synops, spikes per synapse per inference, activation sparsity.

    Parameters
    ----------
    report : dict
        A bench report; rows from each method's ``per_stage`` means.
    markdown : bool
        A markdown table instead of aligned plain text.

    Returns
    -------
    str
        The table, method by method, layers before the head.
    """
    rows = []
    for name, e in _rows(report):
        st = e["per_stage"]
        for i, syn in enumerate(st["synops"]):
            sps, sp = st["spikes_per_synapse"][i], (st["activation_sparsity"] + [None] * len(st["synops"]))[i]
            stage = "head" if i >= len(st["activation_sparsity"]) else f"layer {i + 1}"
            rows.append([name, stage, f"{syn:.3g}", f"{st['synops_unfused'][i]:.3g}",
                         "-" if sps is None else f"{sps:.3g}", "-" if sp is None else f"{sp:.3f}"])
    return _table(["method", "stage", "synops", "synops unfused", "spikes/synapse", "sparsity"], rows, markdown)



def label_efficiency_table(le: dict[str, Any], markdown: bool = False) -> str:
    """Per method and representation: the clean accuracy at every ``k`` (mean ± std over draws and
    seeds), then the shifted and thinned accuracy at 10 labels per class and with all.

    Parameters
    ----------
    le : dict
        A bench report's ``label_efficiency``.
    markdown : bool
        A markdown table instead of aligned plain text.

    Returns
    -------
    str
        The table, one row per entry of ``le["rows"]``.
    """
    ks = le["labels_per_class"]
    robust = [(k, v) for k in ("10", "all") if k in ks for v in ("shifted", "thinned")]
    name = lambda k: "all" if k == "all" else f"k={k}"  # noqa: E731

    def cell(row: dict[str, Any], k: str, view: str) -> str:
        a = row["k"].get(k, {}).get(view)
        return "-" if a is None else f"{a['mean']:.3f}" + (f" ± {a['std']:.3f}" if a["std"] else "")

    head = ["method", "representation", *map(name, ks), *[f"{v} {name(k)}" for k, v in robust]]
    rows = [[r["method"], r["representation"], *[cell(r, k, "clean") for k in ks],
             *[cell(r, k, v) for k, v in robust]] for r in le["rows"]]
    return _table(head, rows, markdown)


def _markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    d = report["data"]
    lines = [
        f"# spikeff-bench: {report['dataset']}",
        "",
        f"- command: `{report['command']}`",
        f"- commit: `{report['commit']}`" + (" (with uncommitted changes)" if report.get("dirty") else ""),
        f"- date: {report['date']}",
        "- each method ran at commit: " + ", ".join(f"{k} `{e.get('commit')}`" for k, e in report["methods"].items()),
        f"- device: {report['device']} — {report['device_name']}",
        f"- data: {d['n_train']} train / {d['n_test']} {d['test_split']} samples, T={d['time_bins']}, "
        f"frames {d['frame_shape']}",
        f"- seeds: {s['seeds']}; network: {report.get('network', {}).get('conv_channels')} conv channels, "
        f"hidden {report.get('network', {}).get('hidden')}; "
        f"spikeff trials {report.get('train_config', {}).get('trials')}, "
        f"epochs {report.get('train_config', {}).get('epochs')} "
        f"+ readout {report.get('train_config', {}).get('readout_epochs')}",
        "",
        "## Results",
        "",
        f"Accuracy: median over seeds [95 % Wilson interval on {d['n_test']} samples], seeds' range. "
        "E = energy per inference under each cost model (see `report.json` → `cost_models`). inputs/s counts "
        "training inputs; trial-samples/s counts each noisy trial (or FF pass) as a sample.",
        "",
        summary_table(report, markdown=True),
        "",
    ]
    if report["frontier"]["points"]:
        lines += ["## Energy-accuracy frontier", "", "Cheapest first under the first cost model.", "",
                  frontier_table(report, markdown=True), ""]
        if report["frontier"]["matched_bptt"]:
            lines += ["Matched-accuracy operating point (the cheapest spikeff point that reaches BPTT's median "
                      "accuracy):", ""] + [f"- {x}" for x in matched_lines(report)] + [""]
    lines += ["## Per layer", "", "Mean over seeds and test inputs. spikes/synapse = synops / synapses of the "
              "unrolled executed op (a dense net uses each weight T times per inference); sparsity = 1 - "
              "spikes / neuron updates.", "", layer_table(report, markdown=True), ""]
    sel = report["methods"].get("bptt", {}).get("selection")
    if sel:
        lines += ["## BPTT learning-rate choice", "",
                  f"On {sel['n_holdout']} held-out training samples (fit on {sel['n_fit']}), {sel['epochs']} epochs "
                  f"of cosine decay; rule: {sel['rule']}. Chosen: lr {sel['lr']:g}, "
                  f"{'converged' if sel['converged'] else 'NOT converged'}.", "",
                  "| lr | held-out accuracy, last 5 epochs | mean, last quarter | converged |", "|---|---|---|---|"]
        lines += [f"| {c['lr']:g} | {', '.join(f'{a:.3f}' for a in c['holdout_accuracy'][-5:])} | "
                  f"{c['last_quarter']:.3f} | {c['converged']} |" for c in sel["curves"].values()]
        lines.append("")
    model = next(iter(report["cost_models"]))
    for key, title, x_name in (("trials_curve", "Accuracy vs trials (spikeff)", "trials n"),
                               ("noise_curve", "Accuracy vs noise (spikeff)", "delta")):
        c = report.get(key)
        if c:
            lines += [f"## {title}", "", c.get("method", c.get("note", "")), "",
                      f"| {x_name} | energy mode [95 % CI] | synops/inf | E {model} |", "|---|---|---|---|"]
            lines += [f"| {x:g} | {_fmt_acc(a)} | {so:.3g} | {_fmt_e(en)} |"
                      for x, a, so, en in zip(c["x"], c["energy"], c["synops_per_inference"],
                                              c["energy_pj_per_inference"][model])]
            lines.append("")
    pr = report.get("probes")
    if pr and "trained" in pr:
        n = len(pr["trained"]["mean"])
        lines += ["## Linear probe per layer (spikeff)", "", pr["method"], "",
                  "| net | input | " + " | ".join(f"layer {k}" for k in range(1, n)) + " |", "|---" * (n + 1) + "|"]
        lines += [f"| {net} | " + " | ".join(f"{m:.3f} ± {sd:.3f}" for m, sd in zip(pr[net]["mean"], pr[net]["std"]))
                  + " |" for net in ("trained", "control") if net in pr]
        lines.append("")
    le = report.get("label_efficiency")
    if le:
        lines += ["## Label-efficient readouts", "", le["note"], "", f"Features: {le['features']}. Views: "
                  + "; ".join(f"{v}: {d}" for v, d in le["views"].items()) + ".", "", label_efficiency_table(le, True),
                  ""]
        if le["paired"]:
            lines += ["Paired, trained - control on the same labels (clean; mean over seeds [min, max]):", ""]
            lines += [f"- {p.get('method', 'spikeff')} {p['representation']}: " + ", ".join(
                f"{'all' if k == 'all' else 'k=' + k} {_signed(d['mean'])} [{_signed(d['min'])}, {_signed(d['max'])}]"
                for k, d in p["k"].items()) for p in le["paired"]] + [""]
    if report.get("figures"):
        lines += ["## Figures", ""] + [f"- [{k}]({v})" for k, v in report["figures"].items()] + [""]
    lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(lines)


README_BLOCK = re.compile(r"(<!-- bench: (?P<dir>[^ ]+) -->\n)(?P<body>.*?)(<!-- /bench -->)", re.S)


def readme_block(report: dict[str, Any]) -> str:
    """The README's view of a report: the summary table, the frontier and the matched operating point.

    Parameters
    ----------
    report : dict
        A bench report (``report.json``).

    Returns
    -------
    str
        Markdown, without the block's marker comments.
    """
    d = report["data"]
    lines = [f"`{report['command']}` (commit `{report['commit']}`, {report['date'][:10]}, {report['device_name']}; "
             f"{d['n_train']} train / {d['n_test']} {d['test_split']} samples). Accuracy: median over seeds "
             "[95 % Wilson interval], seeds' range; inputs/s counts training inputs, trial-samples/s each noisy "
             "trial.", "", summary_table(report, markdown=True), ""]
    if report["frontier"]["points"]:
        lines += ["Energy-accuracy frontier (cheapest first):", "", frontier_table(report, markdown=True), ""]
        lines += [f"- {x}" for x in matched_lines(report)] + [""]
    return "\n".join(lines)


def update_readme(readme: str | Path) -> list[str]:
    """Regenerate every ``<!-- bench: DIR -->`` ... ``<!-- /bench -->`` block of ``readme`` from
    ``DIR/report.json`` (relative to the README's folder).

    Parameters
    ----------
    readme : str or Path
        The markdown file, rewritten in place.

    Returns
    -------
    list of str
        The folders whose reports were used, in order.

    Raises
    ------
    ValueError
        If a block's ``DIR/report.json`` cannot be read or is not JSON.
    OSError
        If ``readme`` cannot be read or written (a failed write leaves it as it was).
    """
    readme = Path(readme)
    text, used = readme.read_text(), []

    def fill(m: re.Match) -> str:
        path = readme.parent / m["dir"] / "report.json"
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{readme}: the block for {m['dir']} needs a readable {path} ({e})") from None
        used.append(m["dir"])
        return m.group(1) + readme_block(report) + m.group(4)

    new = README_BLOCK.sub(fill, text)
    atomic_write(readme, lambda f: f.write(new), mode="w")
    return used


def write_outputs(report: dict[str, Any], raw: dict[str, dict[str, Any]], out: Path) -> None:
    """Write the figures, ``report.json`` and ``report.md`` into ``out``.

    Parameters
    ----------
    report : dict
        The report of :func:`~spikeff.bench.aggregate.build_report`; its ``figures`` and
        ``per_seed`` entries are filled here.
    raw : dict
        Raw results per method (for the per-seed entries and the spike raster).
    out : Path
        Output folder, created if missing.
    """
    out.mkdir(parents=True, exist_ok=True)
    raster = raw.get("spikeff", {}).get("seeds", [{}])[0].get("raster")
    report["figures"] = write_figures(report, raster, out)
    report["per_seed"] = {name: [{k: v for k, v in r.items() if k not in ("raster", "trials_curve", "noise_curve")}
                                 for r in res["seeds"]] for name, res in raw.items()}
    write_json(out / "report.json", report)
    atomic_write(out / "report.md", lambda f: f.write(_markdown(report)), mode="w")
