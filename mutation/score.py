"""Mutation score per module, from ``mutmut results --all true`` on standard input.

The arguments are the mutant name patterns the run was restricted to; mutants outside them (the
rest of each module, never run) are not counted.
"""

import sys
from collections import Counter, defaultdict
from fnmatch import fnmatch

KILLED = {"killed", "timeout"}
SURVIVED = {"survived", "no tests"}  # a mutant no test runs is a mutant no test kills


def main(patterns: list[str]) -> int:
    by_module: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for line in sys.stdin:
        name, _, status = line.strip().rpartition(": ")
        if not name or not any(fnmatch(name, pattern) for pattern in patterns):
            continue
        module = name.split(".x_")[0].split(".xǁ")[0]
        by_module[module][status] += 1
        if status in SURVIVED:
            survivors.append(f"{name} ({status})")
    if not by_module:
        print("no mutant matches the patterns: run `make mutation` first", file=sys.stderr)
        return 1
    print(f"{'module':32} {'killed':>7} {'survived':>9} {'other':>6} {'score':>7}")
    total_killed = total = 0
    for module, counts in sorted(by_module.items()):
        killed = sum(counts[s] for s in KILLED)
        survived = sum(counts[s] for s in SURVIVED)
        other = sum(counts.values()) - killed - survived
        total_killed, total = total_killed + killed, total + killed + survived
        print(f"{module:32} {killed:7} {survived:9} {other:6} {_percent(killed, killed + survived):>7}")
    print(f"{'all':32} {total_killed:7} {total - total_killed:9} {'':6} {_percent(total_killed, total):>7}")
    if survivors:
        print("\nsurvived (`.venv/bin/mutmut show NAME` prints the change):")
        print("\n".join(f"  {name}" for name in survivors))
    return 0


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
