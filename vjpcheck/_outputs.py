"""Result files for CI: one JSON record, or one JUnit XML test case, per rule and property."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import socket
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vjpcheck._check import ERROR, FAILED, INCONCLUSIVE, NOT_APPLICABLE, PASSED, PropertyResult

if TYPE_CHECKING:
    from vjpcheck._cli import Problem

# Characters that XML 1.0 does not allow, even escaped.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclasses.dataclass
class Record:
    """One rule and property, or one problem, as the result files show it."""

    rule: str
    property: str
    outcome: str
    location: str | None = None
    dtypes: list[str] = dataclasses.field(default_factory=list)
    examples: int = 0
    discarded: dict[str, int] = dataclasses.field(default_factory=dict)
    # Largest |error| / tolerance over the examples that passed; None where nothing ran.
    worst_error_ratio: float | None = None
    seconds: float = 0.0
    message: str = ""


def build_records(problems: Sequence[Problem], results: Sequence[PropertyResult]) -> list[Record]:
    """Turn problems and results into records, problems first, as the table lists them."""
    records = [
        Record(rule=p.name, property=p.stage, outcome=ERROR, location=p.location, message=p.message)
        for p in problems
    ]
    for r in results:
        ran = r.outcome != NOT_APPLICABLE
        records.append(Record(
            rule=r.rule.name,
            property=r.property,
            outcome=r.outcome,
            location=r.rule.location,
            dtypes=[d.name for d in r.dtypes],
            examples=r.examples,
            discarded=dict(r.discarded.most_common()),
            worst_error_ratio=r.worst_ratio if ran and math.isfinite(r.worst_ratio) else None,
            seconds=round(r.seconds, 3),
            message=r.message,
        ))
    return records


def count_outcomes(records: Sequence[Record]) -> dict[str, int]:
    return {
        outcome: sum(r.outcome == outcome for r in records)
        for outcome in (PASSED, FAILED, ERROR, NOT_APPLICABLE, INCONCLUSIVE)
    }


def write_json(path: str | Path, records: Sequence[Record], *, exit_code: int, seconds: float, version: str) -> None:
    """Write the records, a count per outcome and the exit code as one JSON object."""
    document: dict[str, Any] = {
        "vjpcheck_version": version,
        "exit_code": exit_code,
        "seconds": round(seconds, 3),
        "counts": count_outcomes(records),
        "results": [dataclasses.asdict(r) for r in records],
    }
    text = json.dumps(document, indent=2, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def write_junit_xml(path: str | Path, records: Sequence[Record], *, seconds: float) -> None:
    """Write one JUnit test case per record: classname is the rule, name the property.

    Failures and errors carry the report as their text, and a property that does not
    apply is a skipped test case with the reason.
    """
    counts = count_outcomes(records)
    totals = {
        "tests": str(len(records)),
        "failures": str(counts[FAILED]),
        "errors": str(counts[ERROR]),
        "skipped": str(counts[NOT_APPLICABLE] + counts[INCONCLUSIVE]),
        "time": f"{seconds:.3f}",
    }
    root = ElementTree.Element("testsuites", name="vjpcheck", **totals)
    suite = ElementTree.SubElement(
        root, "testsuite", name="vjpcheck", **totals,
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        hostname=socket.gethostname(),
    )
    for record in records:
        _add_test_case(suite, record)
    ElementTree.indent(root)
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _add_test_case(suite: ElementTree.Element, record: Record) -> None:
    case = ElementTree.SubElement(
        suite, "testcase", classname=record.rule, name=record.property, time=f"{record.seconds:.3f}",
    )
    if record.location:
        path, _, line = record.location.rpartition(":")
        if path and line.isdigit():
            case.set("file", path)
            case.set("line", line)
    text = _INVALID_XML.sub("?", record.message)
    first_line = text.splitlines()[0] if text else ""
    if record.outcome == FAILED:
        ElementTree.SubElement(case, "failure", message=first_line, type="RuleMismatch").text = text
    elif record.outcome == ERROR:
        ElementTree.SubElement(case, "error", message=first_line).text = text
    elif record.outcome in (NOT_APPLICABLE, INCONCLUSIVE):
        ElementTree.SubElement(case, "skipped", message=first_line)
    if record.outcome != NOT_APPLICABLE and record.dtypes:
        discarded = ", ".join(f"{count} {reason}" for reason, count in record.discarded.items())
        summary = f"dtypes: {', '.join(record.dtypes)}; examples: {record.examples}"
        ElementTree.SubElement(case, "system-out").text = summary + (f"; discarded: {discarded}" if discarded else "")
