"""`snakemake --report` on the smoke run: every figure and table, with captions, grouped by paper and stage.

Snakemake 9 writes a self-contained HTML file for `--report x.html` (a .zip for `x.zip`). The page embeds the
results as JavaScript literals: `var categories = {category: {subcategory: [path, ...]}}` and
`var results = {path: {caption, mime_type, data_uri, ...}}`, and the front page as `var workflow_desc`.
"""
from __future__ import annotations

import json
import re

import pytest

from conftest import REPO
from grokpath.figures import PAPER_A_FIGURES

pytestmark = pytest.mark.e2e

PAPER_B_FIGURE_DIR = "results/figures/paper_b"
TABLES = ["results/tables/correlations.csv", "results/tables/onset.csv"]


def embedded(html: str, name: str):
    match = re.search(rf"^\s*var {name} = (?=[{{\"])", html, re.M)
    assert match, f"report has no `var {name}`"
    return json.JSONDecoder().raw_decode(html, match.end())[0]


@pytest.fixture(scope="module")
def report(smoke_run) -> dict:
    html = (smoke_run / "results" / "report.html").read_text(encoding="utf-8")
    return {
        "categories": embedded(html, "categories"),
        "results": embedded(html, "results"),
        "front": embedded(html, "workflow_desc"),
        "figures": sorted(str(p.relative_to(smoke_run)) for p in (smoke_run / "results" / "figures").rglob("*.png")),
    }


def test_every_figure_and_table_is_in_the_report(report):
    expected = set(report["figures"]) | set(TABLES)
    assert {f"results/figures/paper_a/{name}.png" for name in PAPER_A_FIGURES} <= expected
    assert any(f.startswith(PAPER_B_FIGURE_DIR) for f in expected)
    missing = sorted(expected - set(report["results"]))
    assert missing == [], f"outputs not declared with report(...): {missing}"


def test_results_are_embedded_with_captions(report):
    for path, result in report["results"].items():
        caption = re.sub(r"<[^>]+>", "", result["caption"] or "").strip()
        assert len(caption) > 40, f"{path}: caption missing or too short"
        assert "Error" not in caption and "System Message" not in caption, f"{path}: caption does not render"
        kind = "image/png" if path.endswith(".png") else "text/csv"
        assert result["mime_type"] == kind
        assert result["data_uri"].startswith(f"data:{kind};") and len(result["data_uri"]) > 200, f"{path} not embedded"


def test_grouped_by_paper_and_stage(report):
    categories = report["categories"]
    assert set(categories) == {"Paper A", "Paper B"}
    assert {"pretrain", "analysis", "theory"} <= set(categories["Paper A"])
    assert len(categories["Paper B"]) >= 3  # one subcategory per figure family
    for paper, folder in (("Paper A", "paper_a"), ("Paper B", "paper_b")):
        paths = [p for subcat in categories[paper].values() for p in subcat]
        assert all(f"/{folder}/" in p or p.startswith("results/tables/") for p in paths)
    assert set(TABLES) <= set(categories["Paper A"]["analysis"])


def test_front_page_renders_config(report):
    front = report["front"]
    assert "grokpath" in front and "Paper A" in front and "Paper B" in front
    assert "{{" not in front and "snakemake.config" not in front  # Jinja placeholders were filled
    assert ">smoke<" in front  # study.name of the smoke config
    assert (REPO / "workflow" / "report" / "workflow.rst").is_file()
