"""Conventions of published workflows: licence, citation, changelog, CI for forks, and the config
keys documented from the schema (so the documentation cannot drift)."""

from __future__ import annotations

import tomllib
import yaml

from facesketch.config import schema
from facesketch.config_docs import render

from .conftest import REPO


def test_config_documentation_is_generated_from_the_schema():
    committed = (REPO / "schemas" / "README.md").read_text()
    assert committed == render(), "regenerate: python -m facesketch.config_docs > schemas/README.md"
    for name in schema()["properties"]:
        assert f"| `{name}` |" in committed, name


def test_licence_citation_changelog_and_ci():
    licence = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert (REPO / "LICENSE").read_text().startswith(f"{licence} License")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == licence
    titles = " ".join(r["title"] for r in cff["references"])
    assert "Human-Inspired Facial Sketch Synthesis" in titles and "Facial-Sketch Synthesis" in titles
    # both papers and the data set: HIDA, the edge/normal CycleGAN (by its authors) and FS2K
    authors = [[a.get("family-names") for a in r["authors"]] for r in cff["references"]]
    assert ["Gao", "Zhu", "Jiang", "Wang"] in authors and ["Yang", "Parque", "Nakano", "Ito"] in authors
    assert any(r.get("doi") == "10.1007/s11633-022-1349-9" for r in cff["references"])  # FS2K's article
    assert "## [Unreleased]" in (REPO / "CHANGELOG.md").read_text()
    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    steps = [s.get("run", "") for job in ci["jobs"].values() for s in job["steps"]]
    assert ".ci/run" in steps  # the same checks as the project's own CI
    assert "make lint" in (REPO / ".ci" / "run").read_text() and "make test" in (REPO / ".ci" / "run").read_text()
