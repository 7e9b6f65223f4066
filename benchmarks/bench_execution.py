"""How fast ExecutionAccuracy scores Spider dev, with and without the sandbox's worker process.

    python benchmarks/bench_execution.py [--repeat 3]

Scores every executable dev pair (the gold query as the prediction, so every query runs to completion)
and prints pairs per second for: the worker process (default) vs in-process, each with and without the
secondary signals (gold hardness and exact-set match, both sqlglot parses). Also the worker's start-up
time and the per-query cost of the sandbox alone. Target: all dev pairs in under 30 s.
"""

from __future__ import annotations

import argparse
import time

from evalkit.data.spider import load_spider
from evalkit.metrics.execution_accuracy import Outcome, score_execution
from evalkit.sandbox import Sandbox

TARGET_S = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per setting; the best is reported")
    parser.add_argument("--data-dir", help="data folder (default: TRADEOFF_DATA_DIR or datasets_cache/)")
    args = parser.parse_args()
    examples = [e for e in load_spider("dev", args.data_dir) if e.db_path is not None]
    print(f"Spider dev: {len(examples)} executable pairs (gold vs gold), best of {args.repeat} passes\n")
    print(f"{'setting':<34}{'pairs/s':>10}{'all pairs':>12}{'queries/s':>12}")
    slowest = 0.0
    for isolation in (True, False):
        mode = "worker process" if isolation else "in-process"
        with Sandbox(isolation=isolation) as sandbox:
            start = time.perf_counter()
            sandbox.run(examples[0].db_path, "SELECT 1")
            startup = time.perf_counter() - start
            query_times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                for example in examples:
                    sandbox.run(example.db_path, example.query)
                query_times.append(time.perf_counter() - start)
            for signals in (False, True):
                times = []
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    results = [score_execution(e.query, e.query, e.db_path, sandbox=sandbox, signals=signals) for e in examples]
                    times.append(time.perf_counter() - start)
                    assert all(r.outcome is Outcome.MATCH for r in results)
                best = min(times)
                slowest = max(slowest, best)
                label = f"{mode}, signals {'on' if signals else 'off'}"
                print(f"{label:<34}{len(examples) / best:>10.0f}{best:>11.2f}s{'':>12}")
        print(f"{mode + ', sandbox.run only':<34}{'':>10}{min(query_times):>11.2f}s{len(examples) / min(query_times):>12.0f}")
        print(f"{mode + ', start-up + first query':<34}{'':>10}{startup:>11.3f}s\n")
    verdict = "meets" if slowest < TARGET_S else "MISSES"
    print(f"slowest setting: {slowest:.1f} s for all {len(examples)} pairs; {verdict} the {TARGET_S:.0f} s target")


if __name__ == "__main__":
    main()
