"""`snakemake --report` on the smoke run: every figure and table, with captions, grouped by paper and stage.

Snakemake 9 writes a self-contained HTML file for `--report x.html` (a .zip for `x.zip`). The page embeds the
results as JavaScript literals: `var categories = {category: {subcategory: [path, ...]}}` and
`var results = {path: {caption, mime_type, data_uri, ...}}`, and the front page as `var workflow_desc`.
"""

from __future__ import annotations

import base64
import html
import json
import re

import pytest
from conftest import REPO

from grokpath.figures import PAPER_A_FIGURES, PAPER_B_FIGURES

pytestmark = pytest.mark.e2e

TABLES = ["results/tables/correlations.csv", "results/tables/controls.csv", "results/tables/onset.csv"]
# every output the rules declare with report(...), and its caption file under workflow/report/
DECLARED = {
    **{f"results/figures/paper_a/{name}.png": f"paper_a/{name}.rst" for name in [*PAPER_A_FIGURES, "fig08_theory"]},
    "results/figures/paper_a/fig00_monitor.png": "paper_a/monitor.rst",
    **{f"results/figures/paper_b/{name}.png": f"paper_b/{name}.rst" for name in PAPER_B_FIGURES},
    "results/tables/correlations.csv": "paper_a/table1_correlations.rst",
    "results/tables/controls.csv": "paper_a/table_controls.rst",
    "results/tables/onset.csv": "paper_a/table_onset.rst",
}


def plain(text: str) -> str:
    """Caption text without markup: HTML tags and entities, rst ``literals``, and runs of whitespace."""
    text = html.unescape(re.sub(r"<[^>]+>", "", text)).replace("``", "")
    return " ".join(text.split())


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
        "workdir": smoke_run,
    }


def test_every_figure_and_table_is_in_the_report(report):
    assert sorted(report["results"]) == sorted(DECLARED)
    assert sorted(set(report["figures"]) | set(TABLES)) == sorted(DECLARED), "a figure on disk is not in the report"


def test_results_are_embedded_with_captions(report):
    for path, result in report["results"].items():
        caption = plain(result["caption"] or "")
        assert "Error" not in caption and "System Message" not in caption, f"{path}: caption does not render"
        source = plain((REPO / "workflow" / "report" / DECLARED[path]).read_text())
        assert caption[:80] == source[:80], f"{path}: caption is not {DECLARED[path]}"
        kind = "image/png" if path.endswith(".png") else "text/csv"
        assert result["mime_type"] == kind
        head, _, data = result["data_uri"].partition(",")
        assert head.startswith(f"data:{kind};") and head.endswith(";base64"), f"{path}: {head}"
        assert base64.b64decode(data) == (report["workdir"] / path).read_bytes(), f"{path}: embedded bytes differ from the file"


def test_grouped_by_paper_and_stage(report):
    categories = report["categories"]
    assert set(categories) == {"Paper A", "Paper B"}
    assert {"pretrain", "analysis", "theory"} <= set(categories["Paper A"])
    assert set(categories["Paper B"]) == set(PAPER_B_FIGURES.values())  # one subcategory per figure family
    for name, subcategory in PAPER_B_FIGURES.items():
        assert f"results/figures/paper_b/{name}.png" in categories["Paper B"][subcategory]
    for paper, folder in (("Paper A", "paper_a"), ("Paper B", "paper_b")):
        paths = [p for subcat in categories[paper].values() for p in subcat]
        assert all(f"/{folder}/" in p or p.startswith("results/tables/") for p in paths)
    assert set(TABLES) <= set(categories["Paper A"]["analysis"])


def test_front_page_renders_config(report):
    front = report["front"]
    assert "grokpath" in front and "Paper A" in front and "Paper B" in front
    assert "{{" not in front and "snakemake.config" not in front  # Jinja placeholders were filled
    assert ">smoke<" in front  # study.name of the smoke config
    # workflow.rst's text, with the smoke config's values filled in
    text = plain(front)
    assert "grokpath: grokking in mixture-of-experts pretraining, and the circuits competition behind it." in text
    assert "circuits.P = 11" in text and "domains math, code, commonsense, domain" in text
