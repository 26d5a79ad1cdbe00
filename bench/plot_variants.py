"""Success alone vs online frames for variants of one recipe, each from its own bench_learning run
(raw results JSON), on one figure with 95% Wilson intervals, plus a JSON of the cells.

bench_learning's own --report-only pools seeds of the standard methods; this plots runs that
differ in an option the method name does not carry (trainer weights, the simulated person).

usage: plot_variants.py OUT_STEM TITLE LABEL=RAW.json[:METHOD] ...
  (METHOD defaults to the one method key the file holds besides base / args / online)
"""
import json
import os
import sys

from hiors.phases import wilson_interval

NON_METHOD = ('args', 'base', 'online')


def variant_cells(path, method=None):
    """[(frames, successes, n)] of one raw file's method (the base at frame 0), seeds pooled."""
    with open(path) as f:
        raw = json.load(f)
    if method is None:
        (method,) = [k for k in raw if k not in NON_METHOD]
    rows = [(0, raw['base']['0'])] if 'base' in raw else []     # budget -> seed -> cell, as the methods
    rows += sorted(((int(b), by_seed) for b, by_seed in raw[method].items()), key=lambda r: r[0])
    out = []
    for frames, by_seed in rows:
        outcomes = [o for cell in by_seed.values() for o in cell['outcomes']]
        out.append((frames, sum(outcomes), len(outcomes)))
    return out


def main(argv):
    stem, title, specs = argv[0], argv[1], argv[2:]
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    cells = []
    for spec in specs:
        label, src = spec.split('=', 1)
        path, _, method = src.partition(':')
        pts = variant_cells(path, method or None)
        xs, ys, lo, hi = [], [], [], []
        for frames, wins, n in pts:
            a, b = wilson_interval(wins, n)
            xs.append(frames)
            ys.append(wins / n)
            lo.append(max(0.0, wins / n - a))       # floor: the interval is rounded at 0 / 100%
            hi.append(max(0.0, b - wins / n))
            cells.append({'variant': label, 'source': os.path.basename(path), 'frames': frames,
                          'n': n, 'successes': wins, 'success_at_1': wins / n, 'ci95': [a, b]})
        ax.errorbar(xs, ys, yerr=[lo, hi], marker='o', capsize=3, label=label)
    ax.set_xlabel('online frames')
    ax.set_ylabel('success alone (success@1)')
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='lower right')
    fig.tight_layout()
    fig.savefig(stem + '.png', dpi=110)
    with open(stem + '.json', 'w') as f:
        json.dump({'title': title, 'cells': cells}, f, indent=1)
    for c in cells:
        print(f"{c['variant']:40s} {c['frames']:5d}  {c['successes']}/{c['n']} = {c['success_at_1']:.0%} "
              f"[{c['ci95'][0]:.0%}, {c['ci95'][1]:.0%}]")


if __name__ == '__main__':
    main(sys.argv[1:])
