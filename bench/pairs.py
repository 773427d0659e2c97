"""Every run and every pair of a shared-harness results file, with the idle share of each run.

    python bench/pairs.py RESULTS.jsonl --pair hp:limit-rawfinal-lean --pair hp-direct:limit-direct

`RESULTS.jsonl` is what `../shared/bench/bench.py` writes (`BENCH_OUT`). For each run: wall
time, records/s, client and server CPU, peak RSS, and the idle share of the two cores,
1 - (client CPU + server CPU) / (2 x wall): the part of the run in which the machine waited
(for a commit to reach the disk, for the client to send the next rows) instead of computing.
For each `--pair A:B`, the k-th run of A is set against the k-th run of B (runs interleaved in
rounds, as SPEC §10 asks) and every ratio B-wall / A-wall is listed, then their median.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

CORES = 2


def idle_share(run: dict[str, Any]) -> float:
    """The share of the two cores neither the client nor the server used during the run."""
    busy = float(run["user_s"] + run["sys_s"] + run["server_cpu_s"])
    return 1 - busy / (CORES * float(run["wall_s"]))


def run_lines(runs: list[dict[str, Any]]) -> list[str]:
    """One markdown row per run, in file order."""
    lines = [
        "| tool | N | wall s | records/s | client CPU s | server CPU s | idle share | RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        client, rate = run["user_s"] + run["sys_s"], run["n"] / run["wall_s"]
        lines.append(
            f"| {run['name']} | {run['n']:,} | {run['wall_s']:.2f} | {rate:,.0f}"
            f" | {client:.1f} | {run['server_cpu_s']:.1f} | {idle_share(run):.0%}"
            f" | {run['max_rss_mib']:.0f} |"
        )
    return lines


def pair_lines(runs: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> list[str]:
    """Every ratio of each pair (the limit's wall time over the target's), and the median."""
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_name[run["name"]].append(run)
    lines = []
    for target, limit in pairs:
        ratios = [
            theirs["wall_s"] / mine["wall_s"]
            for mine, theirs in zip(by_name[target], by_name[limit], strict=False)
        ]
        if not ratios:
            lines.append(f"- {target} / {limit}: no runs of both")
            continue
        listed = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        lines.append(
            f"- {target} against {limit}: {listed} (median {statistics.median(ratios):.2f},"
            f" lowest {min(ratios):.2f})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--pair", action="append", default=[], help="TARGET:LIMIT")
    args = parser.parse_args()
    runs = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    runs = [run for run in runs if run.get("ok", True) and run.get("wall_s")]
    pairs = [(pair.split(":", 1)[0], pair.split(":", 1)[-1]) for pair in args.pair]
    print("\n".join(run_lines(runs)))
    if pairs:
        print()
        print("\n".join(pair_lines(runs, pairs)))


if __name__ == "__main__":
    main()
