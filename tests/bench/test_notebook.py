"""notebooks/driver_comparison.ipynb runs headless on real `bench run --quick` results."""

from __future__ import annotations

import json
import os
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import REPO, QuickRun
from .synthetic import write_run

NOTEBOOK = os.path.join(REPO, "notebooks", "driver_comparison.ipynb")


def _execute(results_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> list:
    """Run the notebook headless on `results_dir`; its outputs, after checking none is an error."""
    # A kernelspec for this interpreter, so the notebook runs with the venv's packages.
    spec_dir = tmp_path / "jupyter" / "kernels" / "strata-bench"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "strata venv",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("STRATA_RESULTS", results_dir)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, kernel_name="strata-bench", timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    errors = [f"{o.ename}: {o.evalue}" for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    return outputs


def test_notebook_executes_on_quick_results(quick_run: QuickRun, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = _execute(quick_run.out, tmp_path, monkeypatch)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 8  # bench report's figures: 3 scenarios, rootfs against depth, 3 CDFs, space
    tables = " ".join(o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "create_read_write+get" in tables and "vfs" in tables


def test_notebook_shows_hosts_of_a_cluster_run(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_run(str(tmp_path / "run"), hosts={"h1": 1.0, "h2": 2.0}, n=5)
    outputs = _execute(run, tmp_path, monkeypatch)
    tables = " ".join(o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "vfs on h1" in tables and "overlay2 on h2" in tables  # host is a dimension of every series
