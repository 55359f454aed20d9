"""Shared fixtures, each built once per test run (helpers.built_once: once across pytest-xdist's workers too): real
CIFAR-10 from ../shared when present, one tiny pipeline run and its report, one tiny exported model, the project
installed as a plain package, and one tiny run each on two datasets that are not CIFAR-10 (digits; a mixed 3-class
folder), with the latter's report. The helpers they use (synthetic files, model export, the CLI in a fresh
interpreter or in this one, the two datasets) are in tests/helpers.py."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["TF_USE_LEGACY_KERAS"] = "1"
_TF_LOG_LEVEL_SET_HERE = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.helpers import (DIGITS_RUN_LIMIT, REPO, SHARED_CIFAR, TINY_RUN_LIMIT, ExportedModel,  # noqa: E402
                           PipelineRun, TinyRun, build_exported_model, built_once, docker_build_sources, run_cli,
                           run_cli_in_process, write_digits, write_mixed_folder)


def _cli_env() -> dict[str, str]:
    """The environment of a CLI run: the CLI's own TensorFlow log level, as a user gets it, not this file's."""
    env = dict(os.environ)
    if _TF_LOG_LEVEL_SET_HERE:
        env.pop("TF_CPP_MIN_LOG_LEVEL")
    return env


def _run_pipeline(args: list[str], output: Path, in_process: bool = False) -> tuple[str, str]:
    """`tokenlearner run ARGS --output OUTPUT` in a fresh interpreter, or with `in_process` in this one (Beam
    in-process runs only: `beam_workers=1`): (console, run id); it must exit 0."""
    command = ["run", *args, "--output", str(output)]
    proc = run_cli_in_process(command) if in_process else run_cli(command, env=_cli_env())
    assert proc.returncode == 0, proc.stdout[-5000:]
    run_id = re.search(r"^run (\S+)$", proc.stdout, flags=re.M)
    assert run_id, proc.stdout[-5000:]
    return proc.stdout, run_id.group(1)


def pytest_collection_modifyitems(config, items):
    """Files with end-to-end (`slow`) tests first, each file's tests in their order: pytest-xdist hands whole files to
    its workers in this order (pyproject: --dist loadfile --no-loadscope-reorder), so a long file is never the last
    one handed out, running alone while the other worker has nothing left to do."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # a stable sort


def _report(output: Path, run_id: str, out: Path) -> Path:
    """`tokenlearner report --output OUTPUT --run RUN_ID --out OUT`, in this interpreter; it must exit 0 printing
    the page's path (docs/reliability.md's exit-code table: `report` 0)."""
    import contextlib
    import io

    import cli

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["report", "--output", str(output), "--run", run_id, "--out", str(out)])
    assert code == 0 and printed.getvalue().splitlines()[-1] == str(out / "report.html"), printed.getvalue()
    return out


@pytest.fixture(scope="session")
def shared_cifar() -> Path:
    if not SHARED_CIFAR.is_file():
        pytest.skip(f"real CIFAR-10 not found at {SHARED_CIFAR} (the ../shared folder beside the checkout)")
    return SHARED_CIFAR


@pytest.fixture(scope="session")
def tiny_run(shared_cifar, tmp_path_factory) -> TinyRun:
    """`tokenlearner run --preset tiny --limit 300` with default settings, once per test run (tests/helpers.py)."""
    def build(output: Path) -> TinyRun:
        console, run_id = _run_pipeline(["--data", str(shared_cifar), "--preset", "tiny", "--limit",
                                         str(TINY_RUN_LIMIT)], output)
        return TinyRun(output=output, console=console, run_id=run_id)
    return built_once(tmp_path_factory, "tiny_run", build)


@pytest.fixture(scope="session")
def tiny_report(tiny_run, tmp_path_factory) -> Path:
    """The folder `tokenlearner report` writes for the shared tiny run: report.html and its PNG figures."""
    return built_once(tmp_path_factory, "tiny_report", lambda out: _report(tiny_run.output, tiny_run.run_id, out))


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory) -> ExportedModel:
    """One tiny exported model for the whole test run (read it, never write into it)."""
    return built_once(tmp_path_factory, "exported_model", build_exported_model)


@pytest.fixture(scope="session")
def installed_project(tmp_path_factory) -> Path:
    """The project as deploy/Dockerfile installs it: `pip install --no-deps .` (a wheel build, not editable) of what
    the Dockerfile's COPY lines bring into its build stage (tests/helpers.py docker_build_sources), into a folder of
    its own, once per test run (read it, never write into it)."""
    def build(folder: Path) -> Path:
        sources, site = docker_build_sources(folder / "image_src"), folder / "site"
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                               "--target", str(site), str(sources)], capture_output=True, text=True)
        assert done.returncode == 0, f"pip install --no-deps . of the image's sources failed:\n{done.stderr[-3000:]}"
        return site
    return built_once(tmp_path_factory, "installed_project", build)


# ------------------------------------------------------------------- your own images: datasets that are not CIFAR-10

@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory) -> Path:
    """scikit-learn's 1,797 handwritten digits as train/<digit name>/*.png and test/<digit name>/*.png."""
    return built_once(tmp_path_factory, "digits", write_digits)


@pytest.fixture(scope="session")
def digits_run(digits_folder, tmp_path_factory) -> PipelineRun:
    """`tokenlearner run --data <digits folder> --preset small_images --limit 300 --epochs 2`, once per test run: the
    preset made for small images (input_size 16) on the dataset it was measured on, at a smoke-test budget (floor 0,
    so it is pushed); its end-to-end test (test_presets_e2e.py leaves it to this one). Beam in the CLI's process
    (`beam_workers=1`: no worker start-ups; the default multi-process DirectRunner is `tiny_run`'s), called in this
    interpreter (`tiny_run` is the one in a fresh interpreter, as a user runs it). Without XLA, as
    test_presets_e2e.py runs keras_io and better: the XLA-compiled Trainer is the `compact` preset's run there, and
    compiling would take longer than these two epochs."""
    def build(output: Path) -> PipelineRun:
        console, run_id = _run_pipeline(["--data", str(digits_folder), "--preset", "small_images", "--limit",
                                         str(DIGITS_RUN_LIMIT), "--epochs", "2", "--set", "accuracy_floor=0",
                                         "--set", "regression_tolerance=1", "--set", "beam_workers=1",
                                         "--set", "jit_compile=off"], output, in_process=True)
        return PipelineRun(output=output, console=console, run_id=run_id, data=digits_folder)
    return built_once(tmp_path_factory, "digits_run", build)


@pytest.fixture(scope="session")
def mixed_folder(tmp_path_factory) -> Path:
    """3 classes, mixed formats, modes and sizes, no test/ folder (tests/helpers.py write_mixed_folder)."""
    return built_once(tmp_path_factory, "mixed", write_mixed_folder)


@pytest.fixture(scope="session")
def mixed_run(mixed_folder, tmp_path_factory) -> PipelineRun:
    """`tokenlearner run --data <mixed folder> --preset tiny` with default settings, once per test run, but Beam in the
    CLI's process (`beam_workers=1`, as `digits_run`): the images are decoded and resized the same in a worker
    process or in this one, and `tiny_run` covers the default multi-process DirectRunner. Called in this interpreter,
    as `digits_run`."""
    def build(output: Path) -> PipelineRun:
        console, run_id = _run_pipeline(["--data", str(mixed_folder), "--preset", "tiny", "--set", "beam_workers=1"],
                                        output, in_process=True)
        return PipelineRun(output=output, console=console, run_id=run_id, data=mixed_folder)
    return built_once(tmp_path_factory, "mixed_run", build)


@pytest.fixture(scope="session")
def mixed_report(mixed_run, tmp_path_factory) -> Path:
    """The folder `tokenlearner report` writes for the mixed run: report.html and its PNG figures."""
    return built_once(tmp_path_factory, "mixed_report", lambda out: _report(mixed_run.output, mixed_run.run_id, out))
