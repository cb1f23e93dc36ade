"""Measure false alarms: run correct rules for many examples and count every failure.

Every rule this script checks is correct, so any failure is a false alarm of vjpcheck's
error model. It runs the worked rules in rules/, the two-layer classifier chain and
JAX's own rules in examples/jax_builtins.py, for --examples examples per property and
dtype, and prints per rule and dtype: examples run, examples discarded and why, false
alarms, the largest error-to-tolerance ratio seen, and the time taken.

    python benchmarks/measure_false_alarms.py --examples 10000

It is not part of the test suite. Each property uses its own Hypothesis run with no
example database, so a run does not depend on earlier ones; --seed fixes the draws.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import hypothesis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

import jax_builtins  # noqa: E402
import rules  # noqa: E402
import vjpcheck as vc  # noqa: E402

# The properties whose verdicts depend on a tolerance; transforms and determinism compare
# the rule with itself exactly, and second_order is declared by few rules.
DEFAULT_PROPERTIES = [
    "matches_autodiff", "adjoint", "flattening", "stability", "composition", "finite_differences", "linearity",
]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200, help="examples per rule, property and dtype (default: 200)")
    parser.add_argument("--dtype", action="append", dest="dtypes", help="dtype to check; repeat (default: float32 and float64)")
    parser.add_argument("--property", action="append", dest="properties", help=f"property to run; repeat (default: {', '.join(DEFAULT_PROPERTIES)})")
    parser.add_argument("--rule", action="append", dest="rules", help="rule name to run; repeat (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed for Hypothesis's draws (default: 0)")
    return parser.parse_args()


def selected_rules(names: list[str] | None) -> list[vc.Rule]:
    pool = [
        rules.linear, rules.relu, rules.softmax, rules.cross_entropy, rules.two_layer_classifier,
        jax_builtins.softmax, jax_builtins.log_softmax, jax_builtins.relu, jax_builtins.logsumexp,
    ]
    return [r for r in pool if names is None or r.name in names]


def measure(rule: vc.Rule, dtype: str, properties: list[str], pool: list[vc.Rule], args) -> dict:
    start = time.perf_counter()
    settings = hypothesis.settings(max_examples=args.examples, database=None, deadline=None)
    report = vc.check_report(rule, properties=properties, dtypes=[dtype], pool=pool, settings=settings, seed=args.seed)
    row = {"examples": 0, "discarded": collections.Counter(), "alarms": [], "ratio": 0.0, "skipped": []}
    for result in report.results:
        row["examples"] += result.examples
        row["discarded"].update(result.discarded)
        row["ratio"] = max(row["ratio"], result.worst_ratio if result.outcome == "passed" else 0.0)
        if result.outcome in ("failed", "error"):
            row["alarms"].append(result)
        elif result.outcome in ("not applicable", "inconclusive"):
            row["skipped"].append(f"{result.property}: {result.outcome}")
    row["seconds"] = time.perf_counter() - start
    return row


def main() -> int:
    args = parse_arguments()
    properties = args.properties or DEFAULT_PROPERTIES
    dtypes = args.dtypes or ["float32", "float64"]
    checked = selected_rules(args.rules)
    pool = selected_rules(None)
    print(f"{args.examples} examples per rule, property and dtype; properties: {', '.join(properties)}")
    print(f"{'rule':30} {'dtype':8} {'examples':>9} {'discarded':>9} {'alarms':>6} {'max err/tol':>11} {'time':>8}")
    total_alarms, start = 0, time.perf_counter()
    for rule in checked:
        for dtype in dtypes:
            row = measure(rule, dtype, properties, pool, args)
            total_alarms += len(row["alarms"])
            print(
                f"{rule.name:30} {dtype:8} {row['examples']:9d} {sum(row['discarded'].values()):9d} "
                f"{len(row['alarms']):6d} {row['ratio']:11.3g} {row['seconds']:7.1f}s",
                flush=True,
            )
            for reason, count in row["discarded"].most_common():
                print(f"    discarded {count} x {reason}")
            for note in row["skipped"]:
                print(f"    {note}")
            for alarm in row["alarms"]:
                print(f"    FALSE ALARM in {alarm.property}:\n" + "\n".join("      " + line for line in alarm.message.splitlines()[:40]))
    print(f"false alarms: {total_alarms}; wall time {time.perf_counter() - start:.0f} s")
    return 1 if total_alarms else 0


if __name__ == "__main__":
    sys.exit(main())
