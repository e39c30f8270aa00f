"""Print the mutation score of each module after ``mutmut run`` (``make mutants``).

Reads ``mutmut results --all true`` (one ``module.function__mutmut_N: status`` line a mutant)
and prints, per module, the mutants killed (by a failing test, a timeout or the type checker),
those that survived, and those no test reached. The score is killed / (all checked - skipped);
mutants not checked yet (a run still going, or stopped) are shown apart.

With ``--survivors``, lists the surviving mutants' names too (``mutmut show NAME`` shows one).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

KILLED = {"killed", "timeout", "caught by type check", "segfault"}
SKIPPED = {"skipped"}


def read_results(mutmut: str) -> dict[str, list[tuple[str, str]]]:
    """Module -> [(mutant name, status)] from mutmut's own report."""
    out = subprocess.run(
        [mutmut, "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    by_module: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if not sep or "__mutmut_" not in name:
            continue
        module = name.split(".x")[0]  # bot.reply.splitting.x_next_cut__mutmut_3
        by_module[module].append((name, status))
    return by_module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survivors", action="store_true", help="list surviving mutants")
    default = str(Path(sys.executable).with_name("mutmut"))
    parser.add_argument("--mutmut", default=default, help="the mutmut command")
    args = parser.parse_args()
    results = read_results(args.mutmut)
    if not results:
        print("No mutmut results: run `make mutants` (or `mutmut run`) first.")
        return 1
    head = f"{'module':36} {'killed':>7} {'survived':>9} {'no tests':>9} {'other':>6}"
    print(f"{head} {'pending':>8} {'score':>6}")
    for module in sorted(results):
        counts = Counter(status for _, status in results[module])
        killed = sum(counts[s] for s in KILLED)
        survived = counts["survived"]
        untested = counts["no tests"]
        pending = counts["not checked"]
        counted = sum(counts.values()) - sum(counts[s] for s in SKIPPED) - pending
        other = counted - killed - survived - untested
        score = f"{killed / counted:6.1%}" if counted else "   n/a"
        line = f"{module:36} {killed:7} {survived:9} {untested:9} {other:6} {pending:8}"
        print(f"{line} {score}")
    if args.survivors:
        for module in sorted(results):
            for name, status in results[module]:
                if status in ("survived", "no tests"):
                    print(f"{status:9} {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
