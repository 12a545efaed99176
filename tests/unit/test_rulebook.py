"""The rulebook (docs/rules.md) and its three executors cannot drift apart.

Every name a rule lists under "Code" exists in the memory, SQL and Redis
executors (or in ``conveyor.core``), and each executor defines the transitions
of ``rules.TRANSITIONS`` in that order.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from conveyor.core import queues, rules, storage

ROOT = Path(__file__).resolve().parents[2]
RULEBOOK = ROOT / "docs" / "rules.md"
BACKENDS = ROOT / "conveyor" / "backends"
EXECUTORS = {
    "memory": BACKENDS / "memory" / "transitions.py",
    "sql": BACKENDS / "sql" / "transitions.py",
    "redis": BACKENDS / "redis" / "lua" / "transitions.lua",
}
CORE = {
    "rules": rules,
    "queues": queues,
    "JobEvent": storage.JobEvent,
    "WorkerInfo": storage.WorkerInfo,
}


def _defined(path: Path) -> list[str]:
    """Top-level function names in definition order (Python or Lua)."""
    text = path.read_text()
    if path.suffix == ".lua":
        return re.findall(r"^(?:local )?function (\w+)\(", text, flags=re.MULTILINE)
    tree = ast.parse(text)
    return [
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def _rules() -> dict[int, list[str]]:
    """Each rule's number and the names on its "Code:" line."""
    found: dict[int, list[str]] = {}
    number = 0
    for line in RULEBOOK.read_text().splitlines():
        heading = re.match(r"### Rule (\d+)\. ", line)
        if heading:
            number = int(heading.group(1))
        elif line.startswith("Code:"):
            found[number] = re.findall(r"`([\w.]+)`", line)
    return found


def test_every_rule_names_its_code() -> None:
    found = _rules()
    assert sorted(found) == list(range(1, 16))
    assert all(found[n] for n in found)


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
def test_every_transition_a_rule_names_exists_in_each_executor(executor: str) -> None:
    defined = set(_defined(EXECUTORS[executor]))
    named = {name for names in _rules().values() for name in names if "." not in name}
    assert named <= set(rules.TRANSITIONS), "name it in rules.TRANSITIONS too"
    assert sorted(named - defined) == []


def test_every_core_name_a_rule_cites_exists() -> None:
    for names in _rules().values():
        for name in names:
            if "." in name:
                owner, attribute = name.split(".", 1)
                assert hasattr(CORE[owner], attribute), name


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
def test_each_executor_defines_the_transitions_in_the_same_order(executor: str) -> None:
    defined = _defined(EXECUTORS[executor])
    missing = [name for name in rules.TRANSITIONS if name not in defined]
    assert missing == []
    order = [defined.index(name) for name in rules.TRANSITIONS]
    assert order == sorted(order), [
        name for _, name in sorted(zip(order, rules.TRANSITIONS, strict=True))
    ]


def test_no_code_cites_a_document_outside_the_repository() -> None:
    sources = [*ROOT.joinpath("conveyor").rglob("*.py"), *ROOT.joinpath("conveyor").rglob("*.lua")]
    citing = [str(p.relative_to(ROOT)) for p in sources if "DESIGN" in p.read_text()]
    assert citing == []
