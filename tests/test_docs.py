"""The docs stand alone: nothing sends a reader to a file outside the repository, and every
relative link in the README and docs/ leads to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".txt", ""}
LINK = re.compile(r"\[[^\]]*\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _files() -> list[Path]:
    out = []
    for folder in ("treasury", "config", "docs", "workflows", "scripts", "docker", "benchmarks", "tests"):
        out += [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES
                and "results" not in p.parts and "__pycache__" not in p.parts and p.name != "test_docs.py"]
    return [*out, ROOT / "README.md", ROOT / "docker-compose.yml", ROOT / "Dockerfile"]


def test_nothing_points_at_a_design_document_outside_the_repository() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in _files()
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if "design.md" in line or "shared/" in line
    ]
    assert offenders == []


def test_relative_links_in_the_readme_and_docs_resolve() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = [
        f"{page.relative_to(ROOT)} -> {target}"
        for page in pages
        for target in LINK.findall(page.read_text())
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert broken == []
    # the reference covers what a user needs without any other document
    reference = (ROOT / "docs" / "reference.md").read_text()
    for heading in ("### keys.yaml", "### policy.yaml", "### simulator.yaml", "## 4. Workflow files",
                    "## 5. Run, step and request states", "## 6. Command line", "## 8. Trust model",
                    "people.yaml", "treasury serve"):
        assert heading in reference
    readme = (ROOT / "README.md").read_text()
    assert "docs/reference.md" in readme and "treasury serve" in readme
