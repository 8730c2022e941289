"""`bench report`, `bench compare` and `bench list` on real results, and the workloads."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile

import pandas as pd
import pytest

from bench import figures, imagearchive, report, results, workloads

from .conftest import QuickRun, bench
from .synthetic import write_run


def test_report_draws_figures_and_an_index(quick_run: QuickRun, tmp_path) -> None:
    out = tmp_path / "report"
    proc = bench("report", quick_run.out, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [
        "cdf_exec.png",
        "cdf_layer-create.png",
        "cdf_rootfs.png",
        "rootfs_vs_depth.png",
        "scenario_exec.png",
        "scenario_layer-create.png",
        "scenario_rootfs.png",
        "space_amplification.png",
    ]  # no layer_space_vs_depth: busybox is one layer (that figure: test_layer_space_figure_*)
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / png.replace(".png", ".pdf")).read_bytes()[:5] == b"%PDF-"
    assert {"summary.csv", "summary.md", "summary.tex"} <= {p.name for p in out.iterdir()}
    page = (out / "index.html").read_text()
    assert all(f'src="{p}"' in page for p in pngs)
    assert "create_read_write+get" in page and results.load_run(quick_run.out)["run_id"] in page


def test_compare_on_a_real_run_says_what_it_cannot_see(quick_run: QuickRun, tmp_path) -> None:
    """Equal runs: no difference. Three repetitions a side cannot show a 3x slowdown as
    significant over ~50 groups, and compare says so instead of guessing (the detection
    itself is tested on synthetic runs with known truth in test_compare.py)."""
    same = bench("compare", quick_run.out, quick_run.out)
    assert same.returncode == 0, same.stdout
    assert "1.00" in same.stdout and "no difference" in same.stdout
    slower = tmp_path / "slower"
    shutil.copytree(quick_run.out, slower)
    df = pd.read_parquet(slower / results.PARQUET)
    df.loc[df["step"] == "create_read_write+get", "seconds"] *= 3
    df.to_parquet(slower / results.PARQUET, index=False)
    run = results.load_run(str(slower))
    run["machine"]["kernel"] = "0.0.0-other"
    (slower / results.RUN_JSON).write_text(json.dumps(run))
    proc = bench("compare", quick_run.out, str(slower), "--fail-above", "1.2")
    assert "differs: machine.kernel" in proc.stdout
    assert proc.returncode == 0, proc.stdout
    assert "too few repetitions" in proc.stdout and "3.00" in proc.stdout


def test_compare_and_report_refuse_a_non_result_directory(tmp_path) -> None:
    proc = bench("compare", str(tmp_path), str(tmp_path))
    assert proc.returncode == 2 and "not a bench result directory" in proc.stdout


def test_list_shows_every_registered_driver() -> None:
    import graphdrivers

    proc = bench("list")
    assert proc.returncode == 0, proc.stderr
    for name in graphdrivers.registered():
        assert name in proc.stdout
    vfs_line = next(line for line in proc.stdout.splitlines() if " vfs " in line)
    assert "yes" in vfs_line


def _digests(w: workloads.Workload) -> list[str]:
    return [layer.sha256 for layer in w.layers]


def test_workloads_are_deterministic(tmp_path) -> None:
    for name in ("small-files", "deep", "mixed"):
        a = workloads.build(name, str(tmp_path / f"{name}-a"), quick=True)
        b = workloads.build(name, str(tmp_path / f"{name}-b"), quick=True)
        assert _digests(a) == _digests(b)
        for layer in a.layers:
            with open(layer.path, "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == layer.sha256


def test_mixed_workload_matches_its_documented_shape(tmp_path) -> None:
    w = workloads.build("mixed", str(tmp_path), quick=True)
    assert [layer.files for layer in w.layers] == [150, 60, 3 + 10, 2 + 5]
    with tarfile.open(w.layers[3].path) as tar:
        assert len([m for m in tar if os.path.basename(m.name).startswith(".wh.")]) == 10
    deep = workloads.build("deep", str(tmp_path / "deep"), quick=True, depth=5)
    assert len(deep.layers) == 5


@pytest.mark.parametrize(("layout", "compression"), [("docker", "gzip"), ("legacy", "gzip"), ("oci-tar", "zstd")])
def test_image_archive_layers_become_the_workload(tmp_path, layout: str, compression: str) -> None:
    """--image: a docker save archive's or OCI layout's layers, in order, decompressed."""
    from engine.images import testimages

    _base, multi = testimages.multilayer(str(tmp_path / "build"), small_files=20, big_size=1 << 20)
    archive = testimages.write(str(tmp_path / "multi.tar"), [multi], layout=layout, compression=compression)
    w = imagearchive.workload_from_image(archive, str(tmp_path / "wl"))
    assert len(w.layers) == len(multi.layer_files)
    for layer, original in zip(w.layers, multi.layer_files, strict=True):
        with open(original, "rb") as f:
            assert layer.sha256 == hashlib.sha256(f.read()).hexdigest()


def test_bad_image_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        tar.add(__file__, arcname="hello.py")
    proc = bench("run", "--driver", "vfs", "--image", str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "neither a docker save archive (manifest.json)" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_bottom_file_survives_the_whiteouts_above_it(tmp_path) -> None:
    """rootfs reads a bottom-layer file to prove the rootfs is usable; it must not be deleted."""
    from bench.scenarios import bottom_file

    mixed = [layer.path for layer in workloads.build("mixed", str(tmp_path / "m"), quick=True).layers]
    with tarfile.open(mixed[0]) as tar:
        first = next(m.name for m in tar if m.isreg())
    assert bottom_file(mixed[:1]) == first
    survivor = bottom_file(mixed)  # the config layer deletes the first 10 base files
    assert survivor != first and survivor.startswith("usr/lib/")
    deep = [layer.path for layer in workloads.build("deep", str(tmp_path / "d"), quick=True, depth=3).layers]
    assert bottom_file(deep) == "deep/000/f1"  # layer 1 deletes deep/000/f0


def test_a_release_error_never_masks_ctrl_c(make_backing) -> None:
    """Cleanup after Ctrl-C must not turn the interrupt into a driver failure."""
    import graphdrivers
    from bench.layers import Layers

    fs = make_backing("ext4", 64 << 20)
    driver = graphdrivers.get_driver("vfs", root=os.path.join(fs.mountpoint, "root"))
    try:
        with pytest.raises(KeyboardInterrupt) as caught, Layers(driver, "t") as layers:
            layers.created_layer("never-made")  # its remove will fail with LayerNotFound
            raise KeyboardInterrupt
        assert "never-made" in " ".join(caught.value.__notes__)
        with pytest.raises(graphdrivers.errors.DriverError, match="never-made"), Layers(driver, "t") as layers:
            layers.created_layer("never-made")
    finally:
        driver.cleanup()


def test_report_over_two_runs_labels_each_run(quick_run: QuickRun, tmp_path) -> None:
    other = tmp_path / "other"
    shutil.copytree(quick_run.out, other)
    df = pd.read_parquet(other / results.PARQUET)
    df["run_id"] = "20000101T000000Z-beef"
    df.to_parquet(other / results.PARQUET, index=False)
    proc = bench("report", quick_run.out, str(other), "--out", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "vfs @20000101T000000Z-beef" in page
    assert f"vfs @{results.load_run(quick_run.out)['run_id']}" in page


def test_impossible_runs_are_refused_before_anything_is_set_up(tmp_path) -> None:
    for args, message in (
        (["--backing", str(tmp_path / "missing")], "not a directory"),
        (["--image", str(tmp_path / "missing.tar")], "no such file"),
        (["--depths", "0,8"], "between 1 and 127"),
        (["--scenario", "layer-create,boot"], "unknown boot"),
    ):
        proc = bench("run", "--driver", "vfs", "--out", str(tmp_path / "out"), *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repeat", "5", "--max-repeat", "9"], "--max-repeat steers --repeat auto; with a fixed --repeat 5"),
        (["--repeat", "5", "--max-time", "9"], "--max-time steers --repeat auto"),
        (["--quick", "--target-ci", "0.2"], "--target-ci steers --repeat auto; with a fixed --repeat 3 (--quick)"),
        (["--repeat", "auto", "--max-repeat", "3"], "--max-repeat 3 is below --repeat auto's minimum of 6"),
        (["--scenario", "exec", "--io-runtime", "1"], "--io-runtime configures the io scenario"),
        (["--scenario", "exec", "--io-jobs", "randread_4k"], "--io-jobs configures the io scenario"),
        (["--scenario", "exec", "--depths", "1"], "--depths configures the rootfs scenario"),
        (["--scenario", "exec", "--pad-bytes", "4K"], "--pad-bytes configures the rootfs scenario"),
        (["--scenario", "rootfs", "--copyup-bytes", "8M"], "--copyup-bytes configures the exec scenario"),
        (["--scenario", "rootfs", "--cow-writes", "3"], "--cow-writes configures the exec scenario"),
        (["--scenario", "rootfs", "--cow-stride", "4K"], "--cow-stride configures the exec scenario"),
        (["--scenario", "rootfs", "--execdriver", "oci"], "--execdriver configures the exec scenario"),
        (["--depth", "4"], "--depth sets the deep workload's layers; the workload is busybox"),
        (["--order", "fixed", "--seed", "3"], "--seed draws the random visiting order; with --order fixed"),
        (["--scenario", "io", "--cache", "warm"], "--cache: io and pull drop the page cache"),
    ],
)
def test_options_that_would_change_nothing_are_refused_by_name(tmp_path, capsys, args, message) -> None:
    from bench import cli

    assert cli.main(["run", "--driver", "vfs", "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_report_facets_a_cluster_run_by_host(tmp_path) -> None:
    run = write_run(str(tmp_path / "run"), hosts={"h1": 1.0, "h2": 2.0}, n=5)
    assert report.report([run], str(tmp_path / "report")) == 0
    made = set(os.listdir(tmp_path / "report"))
    assert {"scenario_rootfs_h1.png", "scenario_rootfs_h2.png", "cdf_exec_h1.pdf", "cdf_exec_h2.pdf"} <= made
    assert "scenario_rootfs.png" not in made  # no figure pools the hosts
    page = (tmp_path / "report" / "index.html").read_text()
    assert "host <b>h1</b>" in page and "host <b>h2</b>" in page and "vfs on h2" in page
    stats = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert set(stats["host"]) == {"h1", "h2"}
    # each driver's cell ran on its own worker, not interleaved with the others: no x fastest
    assert stats["vs_fastest"].isna().all()



def test_layer_space_figure_plots_each_layers_space_against_depth(tmp_path) -> None:
    """A vfs layer holds copies of everything below it, an overlay2 layer only its own files:
    the figure's median lines carry exactly the per-layer medians, beside the file data, and
    the report includes it."""
    used = {"vfs": (100, 200, 300), "overlay2": (100, 100, 100)}  # KiB a layer, by depth
    rows = [
        results.Row(
            run_id="r", driver=driver, backend=driver, backing_fs="ext4", scenario="layer-create",
            step="create+apply_diff", workload="deep", layer=depth - 1, depth=depth, bytes=90 << 10, repetition=rep,
            seconds=0.01,
        ).with_space(0, (kib + rep) << 10)
        for driver, sizes in used.items() for depth, kib in enumerate(sizes, 1) for rep in range(3)
    ]  # fmt: skip
    rows += [  # the chain rows a real run has beside them (the summary's)
        results.Row(run_id="r", driver=driver, backend=driver, backing_fs="ext4", scenario="layer-create",
                    step="chain:create+apply_diff", workload="deep", layer=-1, depth=3, repetition=rep, seconds=0.03)
        for driver in used for rep in range(3)
    ]  # fmt: skip
    df = results.frame(rows)
    fig = figures.layer_space_figure(df, [{"run_id": "r"}])
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    for driver, sizes in used.items():
        assert list(lines[driver].get_xdata()) == [1, 2, 3]
        assert list(lines[driver].get_ydata()) == [kib + 1 for kib in sizes]  # the median of kib + 0, 1, 2
    assert list(lines["file data"].get_ydata()) == [90, 90, 90]
    out = tmp_path / "run"
    results.write(str(out), rows, {"run_id": "r"})
    proc = bench("report", str(out), "--out", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "report" / "layer_space_vs_depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'src="layer_space_vs_depth.png"' in (tmp_path / "report" / "index.html").read_text()


def test_report_summary_divides_by_the_floor_of_the_same_driver(tmp_path) -> None:
    """The report's summary joins each strata group with its driver's floor, as bench run's does."""
    rows = [
        results.Row(run_id="r", system=system, driver="vfs", backend=backend, backing_fs="ext4", scenario="rootfs",
                    step="create_read_write", workload="busybox", depth=1, cache="warm", repetition=rep,
                    seconds=seconds)
        for system, backend, seconds in (("strata", "vfs", 0.04), ("floor", "copy_file_range copy", 0.01))
        for rep in range(3)
    ]  # fmt: skip
    out = tmp_path / "run"
    results.write(str(out), rows, {"run_id": "r"})
    proc = bench("report", str(out), "--out", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    strata = summary[summary["system"] == "strata"]
    assert list(strata["vs_floor"]) == [4.0]
