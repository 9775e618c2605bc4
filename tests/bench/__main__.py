"""`make bench`: every figure beside its reference, measured in one run; writes results/bench.json.

Each tests/bench/bench_<area>.py defines `run(report)`; it calls `report(name, value, unit, note)`
for each figure. Ratios are what to quote: these machines are shared and noisy.
"""

import importlib
import json
import pkgutil
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    figures: dict[str, float] = {}
    failed = []

    def report(name: str, value: float, unit: str = "", note: str = "") -> None:
        figures[name] = value
        print(f"  {name:<34} {value:>14.4g} {unit:<10} {note}", flush=True)

    here = Path(__file__).parent
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if not info.name.startswith("bench_"):
            continue
        print(f"[{info.name[6:]}]", flush=True)
        t0 = time.monotonic()
        try:
            importlib.import_module(f"tests.bench.{info.name}").run(report)
        except Exception:
            traceback.print_exc()
            failed.append(info.name)
        print(f"  ({time.monotonic() - t0:.1f} s)", flush=True)
    out = ROOT / "results" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    print(f"{len(figures)} figures written to {out.relative_to(ROOT)}")
    if failed:
        print("benchmarks that failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
