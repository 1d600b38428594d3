"""docs/data_contract.md and pipelines/contract.py describe the same contract."""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.contract import RULES, TABLES
from pipelines.validate import BOT_MAX_EVENTS_PER_SECOND, BOT_MIN_EVENTS


def _doc(repo_root: Path) -> str:
    return (repo_root / "docs" / "data_contract.md").read_text()


def _rows(section: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and "---" not in line
    ]


def test_tables_match_the_contract(repo_root: Path) -> None:
    doc = _doc(repo_root)
    for name, spec in TABLES.items():
        match = re.search(rf"^### {name}\b.*?$(.*?)(?=^##)", doc, re.S | re.M)
        assert match, f"no section for {name}"
        rows = _rows(match.group(1))[1:]  # without the header row
        got = [(r[0], r[1], r[2] == "yes") for r in rows]
        assert got == [(c.name, c.kind, c.required) for c in spec.columns], name


def test_rules_table_lists_every_rule_in_order(repo_root: Path) -> None:
    doc = _doc(repo_root)
    section = doc.split("## What bad input gets", 1)[1].split("Details worth knowing", 1)[0]
    names = [r[1].strip("`") for r in _rows(section)[1:]]
    assert names == list(RULES)
    assert (
        f"at least {BOT_MIN_EVENTS} events and more than {BOT_MAX_EVENTS_PER_SECOND:g} "
        "event per second" in doc
    )
