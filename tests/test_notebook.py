"""notebooks/explore.ipynb runs top to bottom on the smoke run's results/ and draws its figures."""

from __future__ import annotations

import json

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

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


# Run in the kernel before the notebook: each plt.show() records the axes of the open figures
# (title, and the x/y data of every drawn line); the last cell prints the record as JSON.
RECORD_PLOTS = """
import json as _json
import matplotlib.pyplot as _plt
_PLOTTED, _show = [], _plt.show
def _recording_show(*args, **kwargs):
    for num in _plt.get_fignums():
        _PLOTTED.append([
            {"title": ax.get_title(), "lines": [[[float(v) for v in line.get_xdata()], [float(v) for v in line.get_ydata()]]
                                                for line in ax.lines if len(line.get_xdata())]}
            for ax in _plt.figure(num).axes
        ])
    return _show(*args, **kwargs)
_plt.show = _recording_show
"""
PRINT_PLOTS = 'print("PLOTTED " + _json.dumps(_PLOTTED))'


def test_notebook_executes_on_smoke_results(smoke_run, monkeypatch):
    import pandas as pd

    results = smoke_run / "results"
    monkeypatch.setenv("GROKPATH_RESULTS", str(results))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    n_cells = len(notebook.cells)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(RECORD_PLOTS))
    notebook.cells.append(nbformat.v4.new_code_cell(PRINT_PLOTS))
    # kernelspec "python3" starts `python`, which jupyter_client maps to this interpreter
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    own = [c for c in notebook.cells[1 : 1 + n_cells] if c.cell_type == "code"]
    outputs = [o for c in own for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert str(results) in "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # images per code cell: setup, loading, then fig 1, the group's distances, the onset panels, figs 4 + 6 + scatter
    images = [sum("image/png" in o.get("data", {}) for o in c.outputs) for c in own]
    assert images == [0, 0, 1, 1, 1, 3]

    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.output_type == "stream")
    plotted = json.loads(printed.removeprefix("PLOTTED "))
    assert len(plotted) == 6  # one recorded figure per image
    curves = pd.read_parquet(results / "metrics" / "curves.parquet")
    domains = list(dict.fromkeys(curves["domain"]))
    onset_panels = plotted[2]
    assert [ax["title"] for ax in onset_panels] == [f"domain = {d}" for d in domains]
    for domain, ax in zip(domains, onset_panels):
        rows = curves[curves["domain"] == domain].sort_values("step")
        steps = rows["step"].astype(float).tolist()
        # accuracy per checkpoint (seaborn's line) and the dotted cumulative accuracy the cell adds
        assert [steps, rows["accuracy"].astype(float).tolist()] in ax["lines"], domain
        assert [steps, rows["cumulative_accuracy"].astype(float).tolist()] in ax["lines"], domain
