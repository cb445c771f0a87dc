"""Table of the label-efficient readouts of `spikeff train --tune` runs: trained - control per seed (paired draws).

usage: python table.py NAME=DIR[,DIR...] ...   (one name per setting, one run folder per seed)
"""
import json
import statistics as st
import sys


def cell(d, net, rep, k, view):
    return d["label_efficiency"]["results"][net][rep][k][view]["mean"]


def main() -> None:
    rows = []
    for arg in sys.argv[1:]:
        name, dirs = arg.split("=")
        runs = [json.load(open(f"{p}/metrics.json")) for p in dirs.split(",")]
        out = {"setting": name, "seeds": [r["seed"] for r in runs]}
        for k, view in (("10", "clean"), ("all", "clean"), ("10", "thinned"), ("all", "thinned")):
            tr = [cell(r, "trained", "layer 2", k, view) for r in runs]
            co = [cell(r, "control", "layer 2", k, view) for r in runs]
            out[f"{view} k={k}"] = (st.mean(tr), st.mean(co), [round(100 * (a - b), 1) for a, b in zip(tr, co)])
        out["energy"] = [r["test_accuracy"]["energy"] for r in runs]
        for term in ("diversity", "consistency"):  # the last epoch's training means, layer 1 and layer 2
            out[term] = [tuple(round(r["history"][-1][f"layer{i}/ed_{term}"], 1) for i in (1, 2)) for r in runs]
        rows.append(out)
    cols = ["clean k=10", "clean k=all", "thinned k=10", "thinned k=all"]
    print("| setting | seeds | " + " | ".join(f"{c}: trained / control, paired per seed" for c in cols)
          + " | energy acc. | div ED L1, L2 | cons ED L1, L2 |")
    print("|" + "---|" * (len(cols) + 5))
    for o in rows:
        cells = [f"{o[c][0]:.3f} / {o[c][1]:.3f}, {', '.join(f'{v:+.1f}' for v in o[c][2])}" for c in cols]
        energy = ", ".join(f"{a:.3f}" for a in o["energy"])
        eds = f"{o['diversity']} | {o['consistency']}"
        print(f"| {o['setting']} | {','.join(map(str, o['seeds']))} | " + " | ".join(cells) + f" | {energy} | {eds} |")


if __name__ == "__main__":
    main()
