"""The killed ratio of the last `mutmut run`, per module and overall; exit 1 below the threshold.

Reads `mutmut results --all true` (one "name: status" line per mutant). Killed means a selected test failed
(or the mutant timed out: an endless loop is caught too). Everything else counts against the ratio: survived, no
tests, suspicious, skipped. Surviving mutants explained in docs/mutation.md (as equivalent) are still counted as
survivors; those not explained there are listed, so a new survivor is either killed by a test or explained.

    python scripts/mutation_score.py [--min 90] [--explained docs/mutation.md]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

KILLED = {"killed", "timeout"}


def results(mutmut: str) -> dict[str, str]:
    out = subprocess.run([mutmut, "results", "--all", "true"], check=True, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and ".x" in name and "__mutmut_" in name:
            found[name] = status.strip()
    return found


def module_of(name: str) -> str:
    """gateway.auth.tokens.xǁTokenServiceǁverify__mutmut_4 -> gateway/auth/tokens.py"""
    return name.split(".x", 1)[0].replace(".", "/") + ".py"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--min", type=float, default=90.0, help="lowest killed percentage that passes")
    parser.add_argument("--explained", type=Path, default=Path("docs/mutation.md"))
    parser.add_argument("--mutmut", default=str(Path(sys.executable).with_name("mutmut")))
    args = parser.parse_args()

    found = results(args.mutmut)
    if not found:
        print("no mutants found: run `mutmut run` first", file=sys.stderr)
        return 1
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status in found.items():
        by_module[module_of(name)][status] += 1
    explained = set(re.findall(r"`([\w.ǁ]+__mutmut_\d+)`", args.explained.read_text(encoding="utf-8"))) \
        if args.explained.exists() else set()

    width = max(len(m) for m in by_module)
    print(f"{'module':<{width}}  killed / total   ratio  (other outcomes)")
    for module in sorted(by_module):
        counts = by_module[module]
        killed, total = sum(counts[s] for s in KILLED), sum(counts.values())
        others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s not in KILLED)
        print(f"{module:<{width}}  {killed:>6} / {total:<6} {100 * killed / total:5.1f}%  ({others})")
    killed = sum(1 for s in found.values() if s in KILLED)
    total = len(found)
    ratio = 100 * killed / total
    survivors = sorted(n for n, s in found.items() if s not in KILLED)
    unexplained = [n for n in survivors if n not in explained]
    print(f"{'overall':<{width}}  {killed:>6} / {total:<6} {ratio:5.1f}%  "
          f"({len(survivors) - len(unexplained)} survivors explained as equivalent in {args.explained})")
    if unexplained:
        print(f"\n{len(unexplained)} surviving mutants not explained in {args.explained} (`mutmut show NAME` shows one):")
        for name in unexplained:
            print(f"  {name}: {found[name]}")
    if ratio < args.min:
        print(f"\nFAIL: {ratio:.1f}% killed, below {args.min:.0f}%", file=sys.stderr)
        return 1
    print(f"\nOK: {ratio:.1f}% killed (at least {args.min:.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
