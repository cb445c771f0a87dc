"""Regenerate the README's bench tables from the reports they name.

    python benchmarks/readme_tables.py [README.md]

Every ``<!-- bench: DIR -->`` ... ``<!-- /bench -->`` block is rewritten from ``DIR/report.json``
(:func:`spikeff.bench.update_readme`), so the README quotes the reports and is never retyped.
"""

from __future__ import annotations

import sys

from spikeff.bench import update_readme

if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "README.md"
    used = update_readme(path)
    print(f"{path}: {len(used)} block(s) regenerated from {', '.join(used) or 'nothing'}")
