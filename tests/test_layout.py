"""The layout's rules, read from the source with `ast` (nothing is imported): each package imports only the packages
below it (`ROOMS`), no import cycle among the project's packages or its modules, the Trainer's entry module imported only by the Trainer (through its path string) and tests, the
graph <-> trainer contract free of TensorFlow, `pipeline/` holding the graph, its runners and settings only, and the
README's Layout table naming every module."""
from __future__ import annotations

import ast
import fnmatch
import os
import re
import subprocess
import sys

from tests.helpers import REPO, pyproject_packages

PACKAGES = tuple(sorted({name.split(".")[0] for name in pyproject_packages()}))  # the project's top-level packages
TRAINER_ENTRY = "trainer.run"
# The layers, bottom to top: a package imports only packages of a lower room; the packages of one room are peers that
# never import each other. trainer/ holds the graph <-> trainer contract, the exit codes and the model; components/
# the custom TFX components and the data they read and write; pipeline/ the graph, its runners and its settings;
# the room above uses those, each for one job; cli/ wires them into `tokenlearner`. bench/ and tests/ are outside
# the rooms: they may import anything.
ROOMS: tuple[frozenset[str], ...] = (
    frozenset({"trainer"}),
    frozenset({"components"}),
    frozenset({"pipeline"}),
    frozenset({"inspection", "inference", "submission", "serving_client"}),
    frozenset({"cli"}),
)


def _module_name(path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules() -> dict[str, object]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def _imports(path, name: str, known) -> set[str]:
    """Project modules `path` imports anywhere in it (top level, functions, TYPE_CHECKING blocks)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from a import b` imports module a.b where there is one, else the name b of module a.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a module a.b: its longest known prefix
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_no_import_cycle_among_the_project_modules():
    modules = _project_modules()
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    assert sum(map(len, graph.values())) > 50, "the import graph is suspiciously small"
    cycle = _cycle(graph)
    assert not cycle, f"import cycle: {' -> '.join(cycle)}"


def _package_imports(modules: dict[str, object]) -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> the module imports behind it, `a.b -> c.d`, for every pair of
    different top-level packages."""
    edges: dict[tuple[str, str], list[str]] = {}
    for name, path in modules.items():
        for target in sorted(_imports(path, name, modules)):
            pair = (name.split(".")[0], target.split(".")[0])
            if pair[0] != pair[1]:
                edges.setdefault(pair, []).append(f"{name} -> {target}")
    return edges


def _room(package: str) -> int:
    return next(level for level, room in enumerate(ROOMS) if package in room)


def _against_the_layers(edges: dict[tuple[str, str], list[str]]) -> list[str]:
    """The imports of a package by one in the same room or a lower one, each with the module imports behind it."""
    return [f"{importer} imports {imported} ({', '.join(why)})" for (importer, imported), why in sorted(edges.items())
            if _room(imported) >= _room(importer)]


def test_every_package_has_a_room():
    placed = sorted(package for room in ROOMS for package in room)
    assert placed == sorted(PACKAGES), "place each top-level package in ROOMS (tests/test_layout.py)"


def test_packages_import_only_the_packages_below_them():
    edges = _package_imports(_project_modules())
    assert ("cli", "trainer") in edges and ("pipeline", "components") in edges, sorted(edges)  # the graph was read
    assert _against_the_layers(edges) == []


def test_no_import_cycle_among_the_packages():
    graph: dict[str, set[str]] = {package: set() for package in PACKAGES}
    for importer, imported in _package_imports(_project_modules()):
        graph[importer].add(imported)
    cycle = _cycle(graph)
    assert not cycle, f"package import cycle: {' -> '.join(cycle)}"


def test_the_layer_rule_refuses_upward_and_sideways_imports():
    edges = {("cli", "trainer"): ["cli.app -> trainer.exit_codes"],
             ("trainer", "cli"): ["trainer.worker -> cli.exit_codes"],
             ("inference", "serving_client"): ["inference.handler -> serving_client.predict"],
             ("components", "pipeline"): ["components.x -> pipeline.config"]}
    assert _against_the_layers(edges) == [
        "components imports pipeline (components.x -> pipeline.config)",
        "inference imports serving_client (inference.handler -> serving_client.predict)",
        "trainer imports cli (trainer.worker -> cli.exit_codes)"]


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_only_the_trainer_and_tests_import_the_trainer_entry_module():
    known = set(_project_modules())
    # The packages, the benchmarks and any top-level script (not build/ copies, not a .venv in the checkout).
    sources = [p for folder in (*PACKAGES, "bench") for p in sorted((REPO / folder).rglob("*.py"))]
    # run.py itself, and worker.py: the launcher of one multi-worker replica calls run_fn as TFX's executor would.
    entry_side = {REPO / "trainer" / "run.py", REPO / "trainer" / "worker.py"}
    sources = [p for p in sources + sorted(REPO.glob("*.py")) if p not in entry_side]
    assert len(sources) > 40
    importers = [str(p.relative_to(REPO)) for p in sources if TRAINER_ENTRY in _imports(p, "", known)]
    assert importers == [], f"{TRAINER_ENTRY} (TensorFlow, TFT, FLOPs) imported by {importers}; " \
                            "import trainer.contract for the graph <-> trainer strings"


def test_the_graph_trainer_contract_imports_nothing():
    tree = ast.parse((REPO / "trainer" / "contract.py").read_text())
    imported = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [getattr(n, "module", None) for n in imported] == ["__future__"]


def test_pipeline_holds_the_graph_its_runners_and_their_settings_only():
    modules = sorted(p.name for p in (REPO / "pipeline").glob("*.py"))
    assert modules == ["__init__.py", "container_limits.py",  # the compile runners' container limits
                       "kubeflow_runner.py", "local_runner.py", "pipeline.py", "vertex_runner.py"]
    folders = sorted(p.name for p in (REPO / "pipeline").iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == ["config"]  # the CLI, run inspection and submission are rooms of their own (top level)


def test_the_serving_client_loads_neither_the_pipeline_settings_nor_ml_metadata():
    code = ("import sys, serving_client.predict; "
            "print(sorted(m for m in sys.modules if m.startswith(('ml_metadata', 'pipeline.config', 'tfx'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_reading_a_dataset_back_loads_no_ingestion_code():
    """Run inspection and the drift check read a written dataset (components/datasets.py, span_stats.py); the
    ingestion code, its encoders and Pillow decoders are for writing one."""
    code = ("import sys, components.datasets, components.span_stats, inspection.run_store; "
            "print(sorted(m for m in sys.modules if m.startswith(('components.ingest', 'components.images', "
            "'components.spans', 'PIL'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_readme_layout_names_every_module_of_the_packages():
    """Each module is named (or matched, as `token_learner*.py`) in the README Layout row of its folder, or by its
    path where the row is the file itself (`pipeline/pipeline.py`): a newcomer's map that cannot fall behind."""
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("\n## Layout"):readme.index("\n## Tests")]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+/)` \|.*$", layout, flags=re.M)}
    unnamed = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path.name.startswith("__"):
                continue
            relative = path.relative_to(REPO).as_posix()
            folder = relative.rpartition("/")[0] + "/"
            named = re.findall(r"`([^`]+)`", rows.get(folder, ""))
            if f"`{relative}`" not in layout and not any(fnmatch.fnmatch(path.name, n) for n in named):
                unnamed.append(relative)
    assert len(rows) >= 6, sorted(rows)
    assert unnamed == [], f"README.md Layout names no row for {unnamed}"


def test_every_top_level_package_logs_its_progress_on_the_console():
    from cli.app import OUR_LOGGERS

    assert len(PACKAGES) >= 8, PACKAGES
    missing = sorted(set(PACKAGES) - set(OUR_LOGGERS))
    assert missing == [], f"the CLI shows no INFO lines of {missing}"


def test_keras_2_is_chosen_in_one_place_by_importing_any_package_that_can_come_first():
    """TF_USE_LEGACY_KERAS=1 is set by trainer/__init__.py only; the packages an entry point or a TFX executor imports
    first import it, so TensorFlow, imported later, finds Keras 2 (tf_keras), which TFT and TFMA need."""
    setters = sorted(str(path.relative_to(REPO)) for package in PACKAGES for path in (REPO / package).rglob("*.py")
                     if 'environ["TF_USE_LEGACY_KERAS"] =' in path.read_text())
    assert setters == ["trainer/__init__.py"]
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    for package in ("cli", "components", "inspection", "pipeline", "trainer"):
        code = f"import os, sys, {package}; print(os.environ.get('TF_USE_LEGACY_KERAS'), 'tensorflow' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["1", "False"], (package, out.stdout, out.stderr)
