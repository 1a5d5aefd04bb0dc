"""Print the criterion results of ``cargo bench -p hippo-core --bench rowmaps`` as a table.

Run from the repository root after the bench: ``python benches/rust/criterion_table.py``.
Reads ``target/criterion/*/new/{benchmark,estimates}.json`` (median time per iteration).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def human_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    rows = []
    for meta_path in sorted(root.glob("**/new/benchmark.json")):
        meta = json.loads(meta_path.read_text())
        estimates = json.loads((meta_path.parent / "estimates.json").read_text())
        seconds = estimates["median"]["point_estimate"] * 1e-9
        elements = (meta.get("throughput") or {}).get("Elements")
        per_row = f"{seconds / elements * 1e9:.3g} ns" if elements else ""
        rate = f"{elements / seconds / 1e6:,.0f} M rows/s" if elements and elements > 1 else ""
        rows.append((meta["full_id"], human_time(seconds), per_row, rate))
    print("| benchmark | median time | per row | throughput |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
