"""notebooks/explore.ipynb runs top to bottom on the smoke run's results/ and draws its figures."""
from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO

pytestmark = pytest.mark.e2e

NOTEBOOK = REPO / "notebooks" / "explore.ipynb"
QUESTIONS = [
    "which samples memorized when?",
    "how do the pathways of one group evolve?",
    "where is the onset?",
    "how do distance and consistency track accuracy?",
]


def test_notebook_asks_the_questions():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    headings = [c.source.lower() for c in notebook.cells if c.cell_type == "markdown"]
    for question in QUESTIONS:
        assert any(question in h for h in headings), question
    first_code = next(c for c in notebook.cells if c.cell_type == "code").source
    assert 'os.environ.get("GROKPATH_RESULTS", "../results")' in first_code
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), "commit the notebook without outputs"


def test_notebook_executes_on_smoke_results(smoke_run, monkeypatch):
    monkeypatch.setenv("GROKPATH_RESULTS", str(smoke_run / "results"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # kernelspec "python3" starts `python`, which jupyter_client maps to this interpreter
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5, f"expected the re-plotted figures, got {len(images)} images"
    assert str(smoke_run / "results") in "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
