"""Benchmark vjpcheck against jax.test_util.check_grads and against jitted jax.vjp.

Run from the repository root:

    python benchmarks/bench_vjpcheck.py

It measures, on the worked rules in rules/ and in one dtype (float32 by default):

1. Same inputs. A seeded numpy generator draws one list of inputs per rule (primals,
   cotangent and tangents). Three tools run on exactly those inputs:
   - vjpcheck's `matches_autodiff` and `adjoint` properties, each run once per input
     through the property's own function, with the input replayed in place of
     Hypothesis's draws (`ReplayData`), so no Hypothesis engine runs;
   - `jax.test_util.check_grads(f, args, order=1, modes=("rev",))`;
   - one jitted `jax.vjp` of the rule, forward and backward: the floor.
   It does so twice. With fresh shapes, every input has a new shape, so each tool
   compiles for every input. With repeated shapes, a few shapes recur, as in a
   Hypothesis run, which draws sizes of at most 4 per dimension by default.
2. A real `vjpcheck.check(rule, properties=["matches_autodiff", "adjoint"])` run, with
   Hypothesis, per example, split into compilation, drawing, property work and the
   Hypothesis engine.
3. Scaling. The `adjoint` property on one elementwise rule at 10^3 to 10^6 elements,
   against one jitted forward and backward pass, with the peak memory of each measured
   in a subprocess per size.

Before each tool runs on a list, JAX's and vjpcheck's caches are cleared, so that no
tool reuses what another one compiled. Wrappers that count compilations and time
Hypothesis's parts only measure, and are removed afterwards. The results are printed
as Markdown and written to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis.errors import UnsatisfiedAssumption
from jax._src import compiler as jax_compiler
from jax.test_util import check_grads

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

import rules  # noqa: E402
import vjpcheck as vc  # noqa: E402
from vjpcheck import _kernels as vc_kernels  # noqa: E402
from vjpcheck import _properties as vc_properties  # noqa: E402
from vjpcheck import _strategies as vc_strategies  # noqa: E402

try:
    from vjpcheck._context import Context, Stats  # noqa: E402
except ImportError:  # vjpcheck versions that define them in _properties
    from vjpcheck._properties import Context, Stats  # noqa: E402

PROPERTY_NAMES = ("matches_autodiff", "adjoint")
# Ranges of drawn values. vjpcheck's default spec is real(-10, 10), and cross_entropy
# declares positive(0.01, 1.0) for p.
DEFAULT_RANGE = (-10.0, 10.0)
VALUE_RANGES = {("cross_entropy", "p"): (0.01, 1.0), ("scaled_tanh", "x"): (-3.0, 3.0)}
COTANGENT_RANGE = (-10.0, 10.0)
TANGENT_RANGE = (-1.0, 1.0)
# vjpcheck keeps drawn values 1e-3 * max(1, the spec's largest magnitude) away from a
# kink, which is 1e-2 for real(-10, 10).
KINK_MARGIN = 1e-2
TANH_SCALE = 2.5

# Targets, each a ratio of times or of memory.
TARGET_CHECK_GRADS_SPEEDUP = 2.0
TARGET_FLOOR_RATIO = 3.0
TARGET_SCALING_RATIO = 5.0
TARGET_MEMORY_RATIO = 4.0
# A log-log slope of time against size up to this is counted as linear.
LINEAR_SLOPE_LIMIT = 1.15


# ----------------------------------------------------------------------------------
# Measurement helpers


class CompileCounter:
    """Count XLA compilations and their seconds while the block runs.

    It wraps `jax._src.compiler.backend_compile_and_load`, through which JAX 0.10.2
    compiles every computation that its persistent cache does not hold. The wrapper
    only measures.
    """

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._original: Callable | None = None

    def __enter__(self) -> CompileCounter:
        self._original = original = jax_compiler.backend_compile_and_load

        def counted(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.count += 1
                self.seconds += time.perf_counter() - start

        jax_compiler.backend_compile_and_load = counted
        return self

    def __exit__(self, *exc) -> None:
        jax_compiler.backend_compile_and_load = self._original


def reset_caches() -> None:
    """Clear JAX's compilation caches and vjpcheck's caches of kernels and strategies."""
    jax.clear_caches()
    for module in (vc_kernels, vc_strategies):
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()
    structure_cache = getattr(vc_kernels, "_structure_cache", None)
    if isinstance(structure_cache, dict):
        structure_cache.clear()


def load_average() -> str:
    return ", ".join(f"{load:.1f}" for load in os.getloadavg())


def machine_info() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = match[1].strip() if match else model
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": model,
        "cores": f"{os.cpu_count()} ({usable} usable by this process)",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "JAX": f"{jax.__version__} ({jax.default_backend()} backend)",
        "NumPy": np.__version__,
        "Hypothesis": hypothesis.__version__,
    }


# ----------------------------------------------------------------------------------
# Inputs


@dataclasses.dataclass
class Inputs:
    """One example: what Hypothesis would draw for it, drawn with numpy instead."""

    sizes: dict[str, int]
    primals: tuple[np.ndarray, ...]
    cotangent: np.ndarray
    # One tangent per real-valued input, in the order of `rule.float_inputs`.
    tangents: tuple[np.ndarray, ...]

    def draws(self, rule: vc.Rule) -> dict[str, object]:
        """Map each Hypothesis draw label that a property uses to its value."""
        values: dict[str, object] = {"core dimension sizes": dict(self.sizes), "cotangent": self.cotangent}
        values.update(zip(rule.arg_names, self.primals))
        for i, tangent in zip(rule.float_inputs, self.tangents):
            values[f"tangent for {rule.arg_names[i]}"] = tangent
        return values


def draw_inputs(rule: vc.Rule, sizes: dict[str, int], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    """Draw one example for the core dimension ``sizes`` with numpy, within the ranges
    that the rule's specs allow and off its kinks."""
    input_shapes, output_shape = rule.signature.shapes(sizes)
    primals = []
    for i, (name, shape) in enumerate(zip(rule.arg_names, input_shapes)):
        spec = rule.specs[i]
        if spec.kind == "index":
            primals.append(rng.integers(0, sizes[spec.dim], size=shape).astype(np.int32))
            continue
        low, high = VALUE_RANGES.get((rule.name, name), DEFAULT_RANGE)
        values = rng.uniform(low, high, size=shape)
        for kink in rule.kinks.get(i, ()):
            near = np.abs(values - kink) < KINK_MARGIN
            values = np.where(near, kink + np.copysign(KINK_MARGIN, values - kink), values)
        primals.append(values.astype(dtype))
    cotangent = rng.uniform(*COTANGENT_RANGE, size=output_shape).astype(dtype)
    tangents = tuple(
        rng.uniform(*TANGENT_RANGE, size=primals[i].shape).astype(dtype) for i in rule.float_inputs
    )
    return Inputs(sizes, tuple(primals), cotangent, tangents)


def fresh_sizes(rule: vc.Rule, count: int) -> list[dict[str, int]]:
    """Give each example its own shape: sizes 5, 6, ... for the first dimension, and
    one more for each later dimension, so that no two dimensions are equal."""
    names = rule.signature.dim_names
    return [{name: 5 + i + k for k, name in enumerate(names)} for i in range(count)]


def repeated_sizes(rule: vc.Rule, count: int, distinct: int) -> list[dict[str, int]]:
    """Cycle ``distinct`` shapes, with sizes from 2 up, over ``count`` examples."""
    names = rule.signature.dim_names
    shapes = [{name: 2 + j + k for k, name in enumerate(names)} for j in range(distinct)]
    return [shapes[i % distinct] for i in range(count)]


# ----------------------------------------------------------------------------------
# The three tools, each run on one example


class ReplayData:
    """A stand-in for Hypothesis's `data` object, whose `draw` returns the stored value
    for the draw's label instead of drawing."""

    def __init__(self, values: dict[str, object]) -> None:
        self.values = values

    def draw(self, strategy, label: str | None = None):
        if label not in self.values:
            raise KeyError(
                f"a vjpcheck property drew {label!r}, which this benchmark does not "
                f"supply (it supplies {sorted(self.values)}); update Inputs.draws."
            )
        return self.values[label]


def make_context(rule: vc.Rule, dtype: np.dtype) -> Context:
    """Build the property context that `vjpcheck.check` builds, with default options.

    Only the fields that `Context` still declares are passed, so that removing a field
    does not break the benchmark. A new field without a default still does.
    """
    defaults = {
        "rule": rule, "dtype": dtype, "shapes": vc_strategies.ShapeOptions(), "rtol": None,
        "atol": None, "pool": [rule], "max_links": 5, "stats": Stats(),
    }
    declared = {field.name for field in dataclasses.fields(Context)}
    return Context(**{key: value for key, value in defaults.items() if key in declared})


def run_property(rule: vc.Rule, name: str, dtype: np.dtype, inputs: Inputs) -> str:
    """Run one vjpcheck property on one example and return "passed", "failed" or
    "discarded"."""
    context = make_context(rule, dtype)
    try:
        with warnings.catch_warnings():
            # hypothesis.reject() outside a Hypothesis test warns before it raises.
            warnings.simplefilter("ignore")
            vc_properties.PROPERTIES[name].run(context, ReplayData(inputs.draws(rule)))
    except UnsatisfiedAssumption:
        return "discarded"
    except vc.RuleMismatch:
        return "failed"
    return "passed"


def vjpcheck_tool(
    rule: vc.Rule, dtype: np.dtype, names: Sequence[str] = PROPERTY_NAMES
) -> Callable[[Inputs], str]:
    def run(inputs: Inputs) -> str:
        outcomes = [run_property(rule, name, dtype, inputs) for name in names]
        failed = [outcome for outcome in outcomes if outcome != "passed"]
        return failed[0] if failed else "passed"

    return run


def _with_floats(rule: vc.Rule, primals: Sequence[object]) -> Callable:
    """Return the rule as a function of its real-valued inputs, with integer inputs fixed."""

    def of_floats(*values):
        full = list(primals)
        for i, value in zip(rule.float_inputs, values):
            full[i] = value
        return rule(*full)

    return of_floats


def check_grads_tool(rule: vc.Rule, dtype: np.dtype) -> Callable[[Inputs], str]:
    """Build a runner of check_grads on the rule, which checks its hand-written VJP.

    check_grads runs eagerly here, without jax.jit.
    """

    def run(inputs: Inputs) -> str:
        arguments = [inputs.primals[i] for i in rule.float_inputs]
        try:
            with jax.enable_x64(dtype == np.float64):
                check_grads(_with_floats(rule, inputs.primals), arguments, order=1, modes=("rev",))
        except AssertionError:
            return "raised"
        return "passed"

    return run


def jitted_vjp_tool(rule: vc.Rule, dtype: np.dtype) -> Callable[[Inputs], str]:
    """Build the floor: one jitted jax.vjp of the rule, its forward pass and its
    hand-written backward."""

    @jax.jit
    def forward_and_backward(primals, cotangent):
        function = _with_floats(rule, primals)
        out, pullback = jax.vjp(function, *[primals[i] for i in rule.float_inputs])
        return out, pullback(cotangent)

    def run(inputs: Inputs) -> str:
        with jax.enable_x64(dtype == np.float64):
            jax.block_until_ready(forward_and_backward(inputs.primals, inputs.cotangent))
        return "passed"

    return run


TOOLS = {"vjpcheck": vjpcheck_tool, "check_grads": check_grads_tool, "jitted vjp": jitted_vjp_tool}


@dataclasses.dataclass
class Timing:
    """Seconds per example, compilations and outcomes of one tool over a list of examples."""

    seconds: list[float]
    compiles: int
    compile_seconds: float
    outcomes: Counter

    @property
    def total(self) -> float:
        return sum(self.seconds)

    def per_example(self) -> float:
        return self.total / len(self.seconds)

    def warm_per_example(self, skip: int) -> float:
        """Median seconds per example after the first ``skip``, which compile."""
        rest = self.seconds[skip:]
        return statistics.median(rest) if rest else math.nan


def time_tool(run: Callable[[Inputs], str], examples: Sequence[Inputs]) -> Timing:
    seconds, outcomes = [], Counter()
    with CompileCounter() as counter:
        for inputs in examples:
            start = time.perf_counter()
            outcomes[run(inputs)] += 1
            seconds.append(time.perf_counter() - start)
    return Timing(seconds, counter.count, counter.seconds, outcomes)


def warm_up(dtype: np.dtype) -> None:
    """Run every tool once, so that one-time costs of imports and JAX's start-up fall
    outside the timings."""
    rule = rules.softmax
    inputs = draw_inputs(rule, {"n": 1}, dtype, np.random.default_rng(12345))
    for make in TOOLS.values():
        make(rule, dtype)(inputs)
    reset_caches()


# ----------------------------------------------------------------------------------
# Section 1: the same inputs for every tool


@dataclasses.dataclass
class SameInputsRow:
    rule: str
    case: str
    examples: int
    distinct_shapes: int
    timings: dict[str, Timing]


def same_inputs_section(args: argparse.Namespace, dtype: np.dtype) -> list[SameInputsRow]:
    rows = []
    for rule in selected_rules(args):
        cases = {
            "fresh": fresh_sizes(rule, args.fresh),
            "repeated": repeated_sizes(rule, args.repeated, args.shapes),
        }
        for case, size_list in cases.items():
            rng = np.random.default_rng([args.seed, len(rows)])
            examples = [draw_inputs(rule, sizes, dtype, rng) for sizes in size_list]
            timings = {}
            for tool, make in TOOLS.items():
                reset_caches()
                timings[tool] = time_tool(make(rule, dtype), examples)
            distinct = len({tuple(sorted(s.items())) for s in size_list})
            rows.append(SameInputsRow(rule.name, case, len(examples), distinct, timings))
            print(f"  {rule.name}, {case} shapes: done", file=sys.stderr)
    return rows


def selected_rules(args: argparse.Namespace) -> list[vc.Rule]:
    return [getattr(rules, name) for name in args.rules]


# ----------------------------------------------------------------------------------
# Section 2: a real vjpcheck.check run, with Hypothesis


@dataclasses.dataclass
class HypothesisRow:
    rule: str
    wall: float
    examples: int
    calls: int
    compiles: int
    compile_seconds: float
    draw_seconds: float
    # Seconds inside the properties, drawing excluded.
    property_seconds: float
    outcome: str


class TimedDraws:
    """A wrapper around Hypothesis's `data` object that adds the seconds spent in `draw`
    to a total."""

    def __init__(self, data, totals: Counter) -> None:
        self.data = data
        self.totals = totals

    def draw(self, strategy, label=None):
        start = time.perf_counter()
        try:
            return self.data.draw(strategy, label=label)
        finally:
            self.totals["draw"] += time.perf_counter() - start


@contextlib.contextmanager
def timed_properties(totals: Counter) -> Iterator[None]:
    """Time each property call and its draws by swapping timed copies into
    `vjpcheck._properties.PROPERTIES` for the block, and restore the originals afterwards."""
    originals = {name: vc_properties.PROPERTIES[name] for name in PROPERTY_NAMES}

    def timed(prop):
        def run(context, data):
            totals["calls"] += 1
            start = time.perf_counter()
            try:
                prop.run(context, TimedDraws(data, totals))
            finally:
                totals["property"] += time.perf_counter() - start

        return dataclasses.replace(prop, run=run)

    for name, prop in originals.items():
        vc_properties.PROPERTIES[name] = timed(prop)
    try:
        yield
    finally:
        vc_properties.PROPERTIES.update(originals)


def hypothesis_section(args: argparse.Namespace, dtype: np.dtype) -> list[HypothesisRow]:
    settings = hypothesis.settings(database=None, derandomize=True)
    rows = []
    for rule in selected_rules(args):
        reset_caches()
        totals: Counter = Counter()
        examples, outcome = 0, "passed"
        with timed_properties(totals), CompileCounter() as counter:
            start = time.perf_counter()
            try:
                report = vc.check(
                    rule, properties=list(PROPERTY_NAMES), max_examples=args.hypothesis_examples,
                    dtypes=[dtype], settings=settings,
                )
                examples = sum(result.examples for result in report.results)
            except vc.RuleMismatch as error:
                # A worked rule is correct, so this is a vjpcheck bug worth seeing.
                outcome = "failed"
                print(f"vjpcheck.check({rule.name}) failed:\n{error}", file=sys.stderr)
            wall = time.perf_counter() - start
        rows.append(HypothesisRow(
            rule.name, wall, examples, totals["calls"], counter.count, counter.seconds,
            totals["draw"], totals["property"] - totals["draw"], outcome,
        ))
        print(f"  vjpcheck.check({rule.name}): done", file=sys.stderr)
    return rows


# ----------------------------------------------------------------------------------
# Section 3: scaling of the adjoint property with the input size


def scaling_rule(name: str) -> vc.Rule:
    if name == "relu":
        return rules.relu
    registry = vc.Registry()

    @vc.rule("(n)->(n)", registry=registry)
    def scaled_tanh(x):
        """Return 2.5 tanh(x) elementwise."""
        return TANH_SCALE * jnp.tanh(x)

    @scaled_tanh.vjp
    def scaled_tanh_vjp(x, out, g):
        # d/dx (a tanh x) = a (1 - tanh(x)^2) = a - out^2 / a.
        return (g * (TANH_SCALE - out * out / TANH_SCALE),)

    return scaled_tanh


@dataclasses.dataclass
class ScalingRow:
    size: int
    adjoint_first: float
    adjoint_warm: float
    adjoint_compiles: int
    floor_first: float
    floor_warm: float
    outcome: str
    memory: dict[str, dict] | None = None


def timed_call(run: Callable[[], str]) -> tuple[float, str]:
    """Return the seconds that ``run`` took and its outcome."""
    start = time.perf_counter()
    outcome = run()
    return time.perf_counter() - start, outcome


def scaling_inputs(rule: vc.Rule, size: int, dtype: np.dtype, seed: int) -> Inputs:
    """Draw the inputs for one size. The memory subprocess draws the same ones."""
    return draw_inputs(rule, {"n": size}, dtype, np.random.default_rng([seed, size]))


def scaling_section(args: argparse.Namespace, dtype: np.dtype) -> list[ScalingRow]:
    rule = scaling_rule(args.scaling_rule)
    reset_caches()
    adjoint = vjpcheck_tool(rule, dtype, names=["adjoint"])
    floor = jitted_vjp_tool(rule, dtype)
    inputs = {size: scaling_inputs(rule, size, dtype, args.seed) for size in args.sizes}

    rows = {}
    for size in args.sizes:
        with CompileCounter() as counter:
            adjoint_first, outcome = timed_call(lambda: adjoint(inputs[size]))
        floor_first, _ = timed_call(lambda: floor(inputs[size]))
        rows[size] = ScalingRow(size, adjoint_first, math.inf, counter.count, floor_first, math.inf, outcome)

    # The warm calls go round the sizes in turn, so that a change in the machine's load
    # affects every size alike. The fastest call per size and tool is the least disturbed.
    for _ in range(args.repeats):
        for size, row in rows.items():
            row.adjoint_warm = min(row.adjoint_warm, timed_call(lambda: adjoint(inputs[size]))[0])
            row.floor_warm = min(row.floor_warm, timed_call(lambda: floor(inputs[size]))[0])
    print("  scaling: timed", file=sys.stderr)

    if args.memory and Path("/proc/self/status").exists():
        for size, row in rows.items():
            row.memory = {tool: memory_in_subprocess(args, size, tool) for tool in ("adjoint", "jitted vjp")}
            print(f"  scaling, memory at {size} elements: done", file=sys.stderr)
    return list(rows.values())


def memory_in_subprocess(args: argparse.Namespace, size: int, tool: str) -> dict:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--memory-probe", tool,
        "--probe-size", str(size), "--dtype", args.dtype,
        "--scaling-rule", args.scaling_rule, "--seed", str(args.seed),
    ]
    # Setting the mmap threshold turns off glibc's adaptive threshold (glibc manual,
    # "Malloc Tunable Parameters"), so that freed large buffers return to the system
    # and the resident set tracks what is alive.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {tool} at {size} elements failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(match[1]) if match else 0


def _reset_peak_rss() -> bool:
    """Reset this process's peak resident set size, VmHWM (proc_pid_clear_refs(5),
    Linux 4.0 and later)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory_probe(args: argparse.Namespace) -> None:
    """Measure one tool at one size in this process and print a JSON line.

    The first call compiles, so its peak includes the compiler's memory. The second
    call's peak is the steady state: the rise of VmHWM over the resident set just before
    it, and tracemalloc's peak for memory that Python and numpy allocate (JAX's arrays
    live outside Python's allocator, so only VmHWM counts them).
    """
    dtype = np.dtype(args.dtype)
    rule = scaling_rule(args.scaling_rule)
    inputs = scaling_inputs(rule, args.probe_size, dtype, args.seed)
    warm_up(dtype)
    if args.memory_probe == "adjoint":
        tool = vjpcheck_tool(rule, dtype, names=["adjoint"])
    else:
        tool = jitted_vjp_tool(rule, dtype)
    gc.collect()

    resettable = _reset_peak_rss()
    before_first = _status_kib("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tool(inputs)
    first_rise = _status_kib("VmHWM") - before_first
    maxrss_rise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before

    gc.collect()
    _reset_peak_rss()
    before_warm = _status_kib("VmRSS")
    tracemalloc.start()
    tool(inputs)
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    warm_rise = _status_kib("VmHWM") - before_warm
    print(json.dumps({
        "resettable": resettable,
        "first_call_kib": first_rise if resettable else maxrss_rise,
        "warm_call_kib": warm_rise if resettable else math.nan,
        "tracemalloc_peak_kib": python_peak / 1024,
        "primal_kib": sum(p.nbytes for p in inputs.primals) / 1024,
        "all_inputs_kib": sum(a.nbytes for a in (*inputs.primals, inputs.cotangent, *inputs.tangents)) / 1024,
    }))


# ----------------------------------------------------------------------------------
# Report


def fmt_ms(seconds: float) -> str:
    milliseconds = seconds * 1e3
    if math.isnan(milliseconds):
        return "-"
    return f"{milliseconds:.3g}" if milliseconds < 1000 else f"{milliseconds:.0f}"


def fmt_ratio(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value < 10:
        return f"{value:.2g}x"
    return f"{value:.0f}x"


def fmt_mib(kib: float) -> str:
    return "-" if math.isnan(kib) else f"{kib / 1024:.3g}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def outcome_text(outcomes: Counter) -> str:
    return ", ".join(f"{count} {name}" for name, count in sorted(outcomes.items()))


def same_inputs_tables(rows: Sequence[SameInputsRow]) -> str:
    return "\n\n".join([
        "Milliseconds per example, amortised over the list: total time, compilations "
        "included, divided by the number of examples. Ratios are of totals.",
        amortised_table(rows),
        "Repeated shapes, steady state: median milliseconds per example after the "
        "first pass over the distinct shapes, which compiles.",
        steady_state_table(rows),
        "Outcomes per example. The rules are correct, so every check should pass; "
        "'raised' means that check_grads raised AssertionError on a correct rule.",
        outcomes_table(rows),
    ])


def amortised_table(rows: Sequence[SameInputsRow]) -> str:
    headers = ["rule", "shapes", "examples (distinct shapes)"]
    headers += [f"{tool} ms/example (compiles)" for tool in TOOLS]
    headers += ["check_grads / vjpcheck", "vjpcheck / jitted vjp"]
    body = []
    for row in [*rows, *same_inputs_totals(rows)]:
        timings = row.timings
        cells = [row.rule, row.case, f"{row.examples} ({row.distinct_shapes})"]
        cells += [f"{fmt_ms(timings[tool].per_example())} ({timings[tool].compiles})" for tool in TOOLS]
        cells.append(fmt_ratio(timings["check_grads"].total / timings["vjpcheck"].total))
        cells.append(fmt_ratio(timings["vjpcheck"].total / timings["jitted vjp"].total))
        body.append(cells)
    return markdown_table(headers, body)


def steady_state(row: SameInputsRow) -> dict[str, float]:
    return {tool: timing.warm_per_example(row.distinct_shapes) for tool, timing in row.timings.items()}


def steady_state_table(rows: Sequence[SameInputsRow]) -> str:
    headers = ["rule", *(f"{tool} warm ms/example" for tool in TOOLS)]
    headers += ["check_grads / vjpcheck", "vjpcheck / jitted vjp"]
    body = []
    for row in rows:
        if row.case != "repeated":
            continue
        warm = steady_state(row)
        cells = [row.rule, *(fmt_ms(warm[tool]) for tool in TOOLS)]
        cells.append(fmt_ratio(warm["check_grads"] / warm["vjpcheck"]))
        cells.append(fmt_ratio(warm["vjpcheck"] / warm["jitted vjp"]))
        body.append(cells)
    return markdown_table(headers, body)


def outcomes_table(rows: Sequence[SameInputsRow]) -> str:
    body = [[row.rule, row.case, *(outcome_text(row.timings[tool].outcomes) for tool in TOOLS)] for row in rows]
    return markdown_table(["rule", "shapes", *TOOLS], body)


def same_inputs_totals(rows: Sequence[SameInputsRow]) -> list[SameInputsRow]:
    """Pool every rule's examples into one row per case."""
    totals = []
    for case in ("fresh", "repeated"):
        selected = [row for row in rows if row.case == case]
        if not selected:
            continue
        timings = {}
        for tool in TOOLS:
            parts = [row.timings[tool] for row in selected]
            timings[tool] = Timing(
                [seconds for part in parts for seconds in part.seconds],
                sum(part.compiles for part in parts),
                sum(part.compile_seconds for part in parts),
                sum((part.outcomes for part in parts), Counter()),
            )
        examples = sum(row.examples for row in selected)
        distinct = sum(row.distinct_shapes for row in selected)
        totals.append(SameInputsRow("all rules", case, examples, distinct, timings))
    return totals


def hypothesis_table(rows: Sequence[HypothesisRow]) -> str:
    headers = [
        "rule", "wall s", "examples (property calls)", "ms/example", "compiles", "compiling s",
        "drawing s", "other property work s", "Hypothesis engine s", "outcome",
    ]
    body = []
    for row in rows:
        engine = row.wall - row.property_seconds - row.draw_seconds
        body.append([
            row.rule, f"{row.wall:.2f}", f"{row.examples} ({row.calls})",
            fmt_ms(row.wall / max(row.examples, 1)), row.compiles, f"{row.compile_seconds:.2f}",
            f"{row.draw_seconds:.2f}", f"{row.property_seconds - row.compile_seconds:.2f}", f"{engine:.2f}",
            row.outcome,
        ])
    return markdown_table(headers, body)


def scaling_table(rows: Sequence[ScalingRow]) -> str:
    headers = [
        "elements", "adjoint first call ms (compiles)", "adjoint warm ms", "forward+backward warm ms",
        "adjoint / forward+backward", "adjoint ns/element", "outcome",
    ]
    body = []
    for row in rows:
        body.append([
            f"{row.size:.0e}", f"{fmt_ms(row.adjoint_first)} ({row.adjoint_compiles})",
            fmt_ms(row.adjoint_warm), fmt_ms(row.floor_warm), fmt_ratio(row.adjoint_warm / row.floor_warm),
            f"{row.adjoint_warm / row.size * 1e9:.3g}", row.outcome,
        ])
    parts = [markdown_table(headers, body)]
    slopes = scaling_slopes(rows)
    if len(rows) > 2:
        slopes.append(scaling_slope(rows[0], rows[-1]))
    if slopes:
        described = [
            f"{low:.0e} to {high:.0e}: adjoint {adjoint:.2f}, forward+backward {floor:.2f}"
            for low, high, adjoint, floor in slopes
        ]
        parts.append("Log-log slope of warm time against size (1 is linear): " + "; ".join(described) + ".")
    if any(row.memory for row in rows):
        parts.append(memory_table(rows))
    return "\n\n".join(parts)


MEMORY_NOTE = (
    "Peak rise: the rise of the process's peak resident set size (VmHWM, the peak that "
    "ru_maxrss reports, reset before each measured call) over the resident set just "
    "before the call, measured in a fresh subprocess per size and tool. The first call "
    "includes the compiler's memory. "
    "A rise of 0 means that the call fit in memory the process already held. "
    "tracemalloc sees only memory that Python and numpy allocate, not JAX's arrays."
)


def memory_table(rows: Sequence[ScalingRow]) -> str:
    headers = [
        "elements", "primal MiB", "primal + tangent + cotangent MiB", "adjoint peak rise MiB (first call)",
        "adjoint peak rise MiB (warm)", "adjoint tracemalloc peak MiB", "adjoint warm peak / primal",
        "adjoint warm peak / all inputs", "forward+backward peak rise MiB (warm)",
        "forward+backward warm peak / primal",
    ]
    body = []
    for row in rows:
        if not row.memory:
            continue
        adjoint, floor = row.memory["adjoint"], row.memory["jitted vjp"]
        primal, everything = adjoint["primal_kib"], adjoint["all_inputs_kib"]
        body.append([
            f"{row.size:.0e}", fmt_mib(primal), fmt_mib(everything), fmt_mib(adjoint["first_call_kib"]),
            fmt_mib(adjoint["warm_call_kib"]), fmt_mib(adjoint["tracemalloc_peak_kib"]),
            fmt_ratio(adjoint["warm_call_kib"] / primal), fmt_ratio(adjoint["warm_call_kib"] / everything),
            fmt_mib(floor["warm_call_kib"]), fmt_ratio(floor["warm_call_kib"] / primal),
        ])
    note = MEMORY_NOTE
    if not all(row.memory["adjoint"]["resettable"] for row in rows if row.memory):
        note += (
            " /proc/self/clear_refs was not writable here, so the first call shows the "
            "rise of ru_maxrss and the warm call is not measured."
        )
    return note + "\n\n" + markdown_table(headers, body)


def scaling_slope(low: ScalingRow, high: ScalingRow) -> tuple[int, int, float, float]:
    """Slopes of log(warm time) against log(size) between two sizes: adjoint, floor."""
    span = math.log(high.size / low.size)
    return (
        low.size, high.size,
        math.log(high.adjoint_warm / low.adjoint_warm) / span,
        math.log(high.floor_warm / low.floor_warm) / span,
    )


def scaling_slopes(rows: Sequence[ScalingRow]) -> list[tuple[int, int, float, float]]:
    """Slopes between consecutive sizes."""
    return [scaling_slope(low, high) for low, high in zip(rows, rows[1:])]


# ----------------------------------------------------------------------------------
# Targets


def verdict(measured: float, target: float, at_least: bool) -> str:
    """Say whether ``measured`` meets ``target`` and, when it does not, by what factor."""
    if math.isnan(measured):
        return "not measured"
    met = measured >= target if at_least else measured <= target
    if met:
        return "met"
    factor = target / measured if at_least else measured / target
    return f"missed by a factor of {factor:.3g}"


def speed_targets(same: Sequence[SameInputsRow]) -> list[list[str]]:
    rows = []
    totals = same_inputs_totals(same)
    speedup_goal = f"vjpcheck at least {TARGET_CHECK_GRADS_SPEEDUP:g}x faster per example than check_grads"
    for total in totals:
        speedup = total.timings["check_grads"].total / total.timings["vjpcheck"].total
        rows.append([
            f"{speedup_goal} ({total.case} shapes, amortised)",
            f"check_grads / vjpcheck = {fmt_ratio(speedup)}", verdict(speedup, TARGET_CHECK_GRADS_SPEEDUP, True),
        ])
    repeated = [steady_state(row) for row in same if row.case == "repeated"]
    if repeated:
        speedup = sum(warm["check_grads"] for warm in repeated) / sum(warm["vjpcheck"] for warm in repeated)
        rows.append([
            f"{speedup_goal} (repeated shapes, steady state, summed over rules)",
            f"check_grads / vjpcheck = {fmt_ratio(speedup)}", verdict(speedup, TARGET_CHECK_GRADS_SPEEDUP, True),
        ])
    for total in totals:
        ratio = total.timings["vjpcheck"].total / total.timings["jitted vjp"].total
        rows.append([
            f"vjpcheck within {TARGET_FLOOR_RATIO:g}x of jitted jax.vjp ({total.case} shapes, amortised)",
            f"vjpcheck / jitted vjp = {fmt_ratio(ratio)}", verdict(ratio, TARGET_FLOOR_RATIO, False),
        ])
    return rows


def scaling_targets(scaling: Sequence[ScalingRow]) -> list[list[str]]:
    if not scaling:
        return []
    largest = scaling[-1]
    ratio = largest.adjoint_warm / largest.floor_warm
    rows = [[
        f"adjoint at {largest.size:.0e} elements within {TARGET_SCALING_RATIO:g}x of forward+backward",
        f"{fmt_ratio(ratio)} (warm)", verdict(ratio, TARGET_SCALING_RATIO, False),
    ]]
    if largest.memory:
        memory = largest.memory["adjoint"]
        ratio = memory["warm_call_kib"] / memory["primal_kib"]
        rows.append([
            f"adjoint peak memory rise at {largest.size:.0e} elements within "
            f"{TARGET_MEMORY_RATIO:g}x of the primal's size",
            f"{fmt_ratio(ratio)} (warm call)", verdict(ratio, TARGET_MEMORY_RATIO, False),
        ])
    slopes = scaling_slopes(scaling)
    if slopes:
        low, high, slope, _ = slopes[-1]
        rows.append([
            f"adjoint cost linear in size (slope at most {LINEAR_SLOPE_LIMIT:g}, {low:.0e} to {high:.0e})",
            f"slope {slope:.2f}", verdict(slope, LINEAR_SLOPE_LIMIT, False),
        ])
    return rows


def targets_table(same: Sequence[SameInputsRow], scaling: Sequence[ScalingRow]) -> str:
    body = speed_targets(same) + scaling_targets(scaling)
    return markdown_table(["target", "measured", "verdict"], body)


# ----------------------------------------------------------------------------------
# Page

USAGE = """\
Run it from the repository root, with vjpcheck and its test dependencies installed:

```
python benchmarks/bench_vjpcheck.py
```

The run below took {seconds:.0f} s with the options listed under Results, and the
script wrote this page. With the default options, runs on a shared 2-core machine took
between 1 and 3 minutes, depending on the other load. `--output ''` prints the results without writing the page.
`--help` lists the options: example counts (`--fresh`, `--repeated`, `--shapes`,
`--hypothesis-examples`), scaling sizes (`--sizes`, `--repeats`, `--scaling-rule`),
`--dtype`, `--rules`, `--sections` and `--no-memory`. Timings on a shared machine vary
from run to run, so run it twice and compare before trusting a difference.

## What it measures

**Same inputs.** A seeded numpy generator draws a list of inputs (primals, output
cotangent and tangents) per rule. vjpcheck runs its `matches_autodiff` and `adjoint`
properties on each input through the properties' own functions. The input is replayed
in place of Hypothesis's draws, so no Hypothesis engine runs.
`jax.test_util.check_grads(f, args, order=1, modes=("rev",))` runs on the same primals
with its default tolerances. Its `f` is the rule, so it checks the hand-written VJP,
with integer inputs held fixed. It draws its own tangent and cotangent. The floor is one
`jax.jit` of `jax.vjp` of the rule, forward and backward. With *fresh* shapes every
input has a new shape, so each tool compiles for each input. With *repeated* shapes a
few shapes recur, as in a Hypothesis run. JAX's and vjpcheck's caches are cleared
before each tool runs on a list.

- *ms/example*: total time over the list divided by its length, compilations included.
  The number in brackets counts XLA compilations.
- *check_grads / vjpcheck*: above 1, vjpcheck is faster.
- *vjpcheck / jitted vjp*: vjpcheck's cost in units of the bare forward and backward.
- *warm*: the median over the examples after the first pass over the distinct shapes.

**A real run.** `vjpcheck.check(rule, properties=["matches_autodiff", "adjoint"],
max_examples=N, dtypes=[dtype])` with Hypothesis, without an example database and
derandomised. *examples* counts the examples that ran to a verdict over both
properties. *property calls* also counts calls that Hypothesis discarded or cut short.
The wall time is split into XLA compilation, Hypothesis's draws inside the properties,
the rest of the properties' work, and the Hypothesis engine (everything outside the
properties).

**Scaling.** The `adjoint` property alone on an elementwise rule at each size, against
one jitted forward and backward pass of the same rule. This run used `{scaling_rule}`.
The default, `scaled_tanh`, is 2.5 tanh(x) with a hand-written VJP, and
`--scaling-rule relu` takes the worked ReLU instead. *first call* compiles. *warm* is
the fastest of the following calls, which go round the sizes in turn. The slope of
log(time) against log(size) is 1 when the cost is linear. Peak memory is measured in a
fresh subprocess per size and tool, as the note above its table explains. It needs
Linux's /proc, and the script skips it elsewhere.

**Targets.** vjpcheck should be at least {speedup:g}x faster per example than
check_grads while it checks both properties, and within {floor:g}x of the jitted
`jax.vjp` amortised over a run. At the largest size the adjoint check should take
within {scaling:g}x of one forward and backward pass, its peak memory rise should stay
within {memory:g}x of the primal's size, and its cost should grow linearly with size.
"""


# The reasons behind the targets that the tables report as missed. It states what the
# design costs, without numbers, so that it stays true whatever a run measures.
OBSTACLES = """### What stands in the way

- **Compilation.** vjpcheck compiles its kernels once per rule, property, dtype and
  shape. They are the rule in the dtype under test with its running error bound, the
  reference in float64 with its own bound, JAX's autodiff of the reference in float32,
  and central differences. check_grads compiles fewer and smaller functions. The *compiling s*
  column of the real run shows that compilation takes most of a run. JAX's persistent
  compilation cache (`vjpcheck check --jax-cache DIR`, see docs/ci.md) removes most of
  it from later runs with the same shapes. Once its kernels are compiled, vjpcheck
  costs about as much per example as check_grads (the steady-state table).
- **The oracles.** A jitted `jax.vjp` is one forward and one backward pass. Each
  vjpcheck example also runs the float64 truth, forward mode, finite differences at
  seven step sizes (14 evaluations of the op), and the error bounds, which carry a
  magnitude next to every value. That is what makes a verdict trustworthy at 16 epsilons, and it is
  what the adjoint scaling table measures. Fewer finite-difference steps, evaluated
  only when the first two disagree, would cut the cost, but not to 5x.
- **Memory.** The float64 copies of the inputs, the magnitude arrays and the residuals
  of the float64 forward and backward passes all live at once, so the peak grows with
  the input at several times the forward pass's rate.
"""


def render_page(args: argparse.Namespace, sections: dict[str, str], seconds: float, load_at_start: str) -> str:
    info = machine_info()
    # A load above the core count means that other work competed for the CPUs, which
    # inflates the timings.
    info["load average (1, 5, 15 min)"] = f"{load_at_start} at the start, {load_average()} at the end"
    machine = "\n".join(f"- {key}: {value}" for key, value in info.items())
    usage = USAGE.format(
        seconds=seconds, scaling_rule=args.scaling_rule,
        speedup=TARGET_CHECK_GRADS_SPEEDUP, floor=TARGET_FLOOR_RATIO,
        scaling=TARGET_SCALING_RATIO, memory=TARGET_MEMORY_RATIO,
    )
    options = " ".join(sys.argv[1:]) or "(defaults)"
    parts = [
        "# Benchmarks",
        "`benchmarks/bench_vjpcheck.py` times vjpcheck against "
        "`jax.test_util.check_grads` and against a jitted `jax.vjp` of the rule on the "
        "worked rules in `rules/`, and measures how the `adjoint` property scales with "
        "the input size.",
        usage.strip(),
        "## Results",
        f"Machine:\n\n{machine}",
        f"Options: `{options}`, dtype {args.dtype}.",
        *sections.values(),
        OBSTACLES.strip(),
    ]
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------
# Command line


RULE_NAMES = ("linear", "relu", "softmax", "cross_entropy")
SECTIONS = ("same", "hypothesis", "scaling")


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _sizes(text: str) -> list[int]:
    return [int(float(item)) for item in _comma_list(text)]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument

    add("--dtype", choices=["float32", "float64"], default="float32", help="dtype under test (default: float32)")
    add("--rules", type=_comma_list, default=list(RULE_NAMES),
        help=f"comma-separated worked rules (default: {','.join(RULE_NAMES)})")

    add("--fresh", type=int, default=6, metavar="N", help="examples per rule with fresh shapes (default: 6)")
    add("--repeated", type=int, default=40, metavar="N",
        help="examples per rule with repeated shapes (default: 40)")
    add("--shapes", type=int, default=3, metavar="K", help="distinct shapes in the repeated case (default: 3)")
    add("--hypothesis-examples", type=int, default=20, metavar="N",
        help="max_examples per property in the real run (default: 20)")

    add("--sizes", type=_sizes, default=[10**3, 10**4, 10**5, 10**6],
        help="comma-separated element counts for the scaling section (default: 1e3,1e4,1e5,1e6)")
    add("--repeats", type=int, default=9, metavar="N", help="warm calls per size in the scaling section (default: 9)")
    add("--scaling-rule", choices=["scaled_tanh", "relu"], default="scaled_tanh",
        help="elementwise rule for the scaling section (default: scaled_tanh)")
    add("--no-memory", dest="memory", action="store_false", help="skip the memory subprocesses of the scaling section")

    add("--sections", type=_comma_list, default=list(SECTIONS),
        help=f"comma-separated sections to run (default: {','.join(SECTIONS)})")
    add("--seed", type=int, default=0, help="seed for the numpy generator that draws the inputs (default: 0)")
    add("--output", default=str(REPOSITORY / "docs" / "benchmarks.md"),
        help="Markdown page to write; '' writes none (default: docs/benchmarks.md)")

    # Internal: the scaling section reruns this script with these to measure memory.
    add("--memory-probe", choices=["adjoint", "jitted vjp"], help=argparse.SUPPRESS)
    add("--probe-size", type=int, help=argparse.SUPPRESS)

    args = parser.parse_args(argv)
    for name, chosen, allowed in (("rules", args.rules, RULE_NAMES), ("sections", args.sections, SECTIONS)):
        unknown = sorted(set(chosen) - set(allowed))
        if unknown:
            parser.error(f"--{name}: unknown {unknown}; choose from {', '.join(allowed)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # A persistent compilation cache from an earlier run would turn fresh shapes into
    # cache hits, so every number here is measured without one.
    jax.config.update("jax_enable_compilation_cache", False)
    if args.memory_probe:
        memory_probe(args)
        return

    dtype = np.dtype(args.dtype)
    start, load_at_start = time.perf_counter(), load_average()
    warm_up(dtype)

    sections: dict[str, str] = {}
    same: list[SameInputsRow] = []
    scaling: list[ScalingRow] = []
    if "same" in args.sections:
        print("Same inputs for every tool...", file=sys.stderr)
        same = same_inputs_section(args, dtype)
        sections["same"] = "### Same inputs: vjpcheck, check_grads and jitted jax.vjp\n\n" + same_inputs_tables(same)
    if "hypothesis" in args.sections:
        print("Real vjpcheck.check runs...", file=sys.stderr)
        rows = hypothesis_section(args, dtype)
        sections["hypothesis"] = (
            f"### A real vjpcheck.check run (max_examples={args.hypothesis_examples} per property)\n\n"
            + hypothesis_table(rows)
        )
    if "scaling" in args.sections:
        print("Scaling...", file=sys.stderr)
        scaling = scaling_section(args, dtype)
        sections["scaling"] = f"### Scaling of the adjoint property ({args.scaling_rule})\n\n" + scaling_table(scaling)

    sections["targets"] = "### Targets\n\n" + targets_table(same, scaling)
    seconds = time.perf_counter() - start
    page = render_page(args, sections, seconds, load_at_start)
    print(page)
    if args.output:
        Path(args.output).write_text(page)
        print(f"Wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
