"""Mutation testing of the deciding code named in issue 41 ("What to build" 5): how many small changes to each
module's deciding functions the tests notice.

    .venv/bin/python bench/mutation.py [--work /var/tmp/mut] [--source .] [--timeout S] [--no-lock] [MODULE ...]

It installs mutmut 3.8.1 into the running interpreter's environment when it is missing (a bench tool: not in
requirements.lock), clones the committed state of `--source` (never the working tree: mutmut rewrites files) into
`--work`/main with `.venv` and `../shared` linked beside it, and for each module writes mutmut's setup.cfg: the file
to mutate, the test files that exercise it (`-n 0 -p no:cacheprovider -m "not slow"`), then runs
`mutmut run` on the mutants of the listed functions only, each module under the CPU lock
(`flock /tmp/heavy.lock nice -n 5 timeout S`, S = --timeout, 1800 by default: the 2-core machine is shared;
--no-lock when the caller holds the lock for the whole run). It ends with a table of killed /
survived / timeout / not checked (the module's --timeout came first) per module, the score being (killed + timeout)
over the mutants checked, and the surviving mutants' names, their diffs kept in `--work`/survivors/.
A mutant listed in EQUIVALENT is counted apart, with the reason it cannot change behaviour.
"""
from __future__ import annotations

import argparse
import ast
import configparser
import dataclasses
import difflib
import fnmatch
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

MUTMUT = "mutmut==3.8.1"
REPO = Path(__file__).resolve().parents[1]
# Every package goes into mutants/ (so nothing is imported from the editable install, i.e. the live tree); only the
# module's own file is mutated.
PACKAGES = ["trainer", "components", "pipeline", "cli", "inference", "inspection", "serving_client", "submission"]
PYTEST = ["-n", "0", "-p", "no:cacheprovider", "-m", "not slow", "-q", "-x"]


@dataclasses.dataclass(frozen=True)
class Module:
    name: str
    path: str  # the file mutmut mutates
    functions: tuple[str, ...]  # mutmut's function keys: x_func, or xǁClassǁmethod
    tests: tuple[str, ...]  # pytest selection (files, or file::test)
    # TensorFlow's runtime threads do not survive a fork of a process that ran TF ops: mutmut's fork server keeps the
    # forking process free of test runs.
    isolation: str = "fork"


def _fn(*names: str) -> tuple[str, ...]:
    return tuple(f"x_{n}" for n in names)


def _method(cls: str, *names: str) -> tuple[str, ...]:
    return tuple(f"xǁ{cls}ǁ{n}" for n in names)


MODULES = [
    Module("span window (validator)", "components/validator.py", _fn("window_spans"),
           ("tests/test_span_window_mutants.py",), "forkserver"),
    Module("span window (example gen)", "components/span_example_gen.py", _fn("window"),
           ("tests/test_span_window_mutants.py",), "forkserver"),
    Module("image header limits", "trainer/image_header.py",
           _fn("declared_size", "check_declared_sizes", "_le", "_be", "_bytes_at", "_gif_size", "_signed32"),
           ("tests/test_image_header_mutants.py",), "forkserver"),
    Module("TF_CONFIG parser", "trainer/cluster.py",
           _fn("parse", "from_env") + _method("Cluster", "workers", "num_workers", "worker_id", "is_chief", "address",
                                              "describe", "named", "peers", "peers_named_in"),
           ("tests/test_cluster_mutants.py",)),
    Module("cron parser", "pipeline/config/schedule.py",
           _fn("parse", "_check_field") + _method("CronSchedule", "expression", "for_vertex", "for_kubeflow"),
           ("tests/test_schedules.py", "tests/test_schedule_mutants.py")),
    Module("restricted unpickler", "components/cifar10_batches.py",
           _fn("unpickle", "_reconstruct", "_latin1") + _method("_BatchUnpickler", "__init__", "find_class",
                                                                   "persistent_load"),
           ("tests/test_security.py", "tests/test_unpickler_mutants.py")),
    Module("exit-code mapping", "cli/app.py", _fn("_run", "_stopped_on_drift"),
           ("tests/test_exit_mapping_mutants.py",)),
    Module("pusher de-duplication", "components/pusher.py", _fn("published_versions", "_source_of", "publish"),
           ("tests/test_pusher.py", "tests/test_pusher_mutants.py"), "forkserver"),
    Module("drift comparator", "components/validator.py",
           _fn("span_drift", "span_drift_schema", "_schema_type", "span_check", "check_span_drift",
               "check_span_drift_settings", "with_label_drift_threshold", "record_acceptance"),
           ("tests/test_span_drift.py", "tests/test_validator_mutants.py"), "forkserver"),
    Module("drift comparator (records)", "components/drift_records.py",
           _fn("distance_text", "drift_message", "read_acceptance")
           + _method("FeatureDrift", "exceeded") + _method("SpanCheck", "beyond", "message", "from_dict"),
           ("tests/test_span_drift.py", "tests/test_validator_mutants.py"), "forkserver"),
]

# Mutants that change no behaviour, each with its reason: counted apart, not as survivors.
_NEGATIVE_SPANS = ("train_spans < 0 is refused before any window is taken (check_span_drift_settings, "
                   "PipelineConfig), and for 0 the slice [-0:] is the whole list, as the else branch returns")
EQUIVALENT: dict[str, str] = {
    "components.validator.x_window_spans__mutmut_5": f"`(train_spans > 0) or True`: {_NEGATIVE_SPANS}",
    "components.validator.x_window_spans__mutmut_7": f"`train_spans >= 0`: {_NEGATIVE_SPANS}",
    "components.cifar10_batches.x__latin1__mutmut_11": "`encode(\"LATIN1\")`: codec names are looked up "
                                                       "case-insensitively (codecs.lookup), the same codec",
    "components.cifar10_batches.x_unpickle__mutmut_13": "`decode(\"LATIN1\")`: codec names are looked up "
                                                        "case-insensitively (codecs.lookup), the same codec",
    "components.pusher.x_publish__mutmut_26": "the first version `max(int(time.time()), 1)` instead of `max(..., 0)`: "
                                              "differs only with a clock before 1970-01-01T00:00:01",
    "components.pusher.x_published_versions__mutmut_7": "`rstrip(\"XX/XX\")`: also strips X, and a name that ends "
                                                        "in X is no number before or after",
    "trainer.image_header.x__gif_size__mutmut_105": "`b >= 0`: for b == 0 (a block's end) pos + b + 1 is pos + 1, "
                                                   "the else branch",
    "trainer.image_header.x__gif_size__mutmut_60": "`pos <= length`: at pos == length the padded byte is 0 instead of "
                                                  "-1; both end the block (not > 0) and are not 0x21, the same steps",
    "trainer.image_header.x__gif_size__mutmut_67": "`_bytes_at(..., 2)[0]`: the first of two bytes is the byte",
    "trainer.image_header.x__gif_size__mutmut_73": "+1 past the end: the loop walks on to its step limit, then reads "
                                                  "zeros past the end (no frame), the screen as with -1",
    "trainer.image_header.x__gif_size__mutmut_74": "-2 past the end: not > 0 and not 0x21, as -1",
    "trainer.image_header.x__gif_size__mutmut_145": "10 descriptor bytes: only bytes 0 to 8 are read",
    "trainer.image_header.x__signed32__mutmut_7": "`value > 2 ** 31`: at 2 ** 31 the result goes through tf.abs, and "
                                                 "abs(2 ** 31 - 2 ** 32) is 2 ** 31",
    "trainer.image_header.x_check_declared_sizes__mutmut_32": "two zero rows appended: a 0 never exceeds the limit and "
                                                              "argmax picks the first maximum",
    "trainer.image_header.x_check_declared_sizes__mutmut_36": "argmax as int64: the same index in the message",
    "trainer.image_header.x_check_declared_sizes__mutmut_38": "argmax as int64: the same index in the message",
    "trainer.image_header.x_check_declared_sizes__mutmut_52": "two zero rows appended: the gathered index is at most N",
    "trainer.image_header.x_check_declared_sizes__mutmut_72": "`control_dependencies(None)`: eagerly the Assert runs at "
                                                              "once, and a tf.function (the serving signature) runs "
                                                              "every stateful op by its automatic control dependencies "
                                                              "(checked: the graph test stays green on this mutant)",
}


def _dotted(path: str) -> str:
    return path[:-3].replace("/", ".")


def _ensure_mutmut() -> None:
    if importlib.util.find_spec("mutmut") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", MUTMUT], check=True)


def _clone(source: Path, work: Path) -> Path:
    clone = work / "main"
    if clone.exists():
        subprocess.run(["rm", "-rf", str(clone)], check=True)
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(source), str(clone)], check=True)
    (clone / ".venv").symlink_to(source / ".venv")
    shared = work / "shared"
    if not shared.exists():
        shared.symlink_to((source.parent / "shared").resolve())
    return clone


def _write_config(clone: Path, module: Module) -> None:
    tests = [t for t in module.tests if (clone / t.split("::")[0]).exists()]
    config = configparser.ConfigParser()
    config["mutmut"] = {
        "source_paths": "\n".join([""] + PACKAGES),
        "only_mutate": "\n" + module.path,
        "also_copy": "\n".join(["", "bench", "setup.py", "README.md", "docs", "deploy"]),
        "pytest_add_cli_args": "\n".join([""] + PYTEST),
        "pytest_add_cli_args_test_selection": "\n".join([""] + tests),
        "use_git_change_detection": "false",
        "process_isolation": module.isolation,
    }
    with open(clone / "setup.cfg", "w") as f:
        config.write(f)


def _results(clone: Path) -> dict[str, str]:
    out = subprocess.run([str(clone / ".venv/bin/mutmut"), "results", "--all", "true"], cwd=clone,
                         capture_output=True, text=True).stdout
    statuses = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            statuses[name] = status.strip()
    return statuses


def mutant_sources(clone: Path, module: Module, names: list[str]) -> str:
    """Each named mutant as a diff against the function it mutates, from the mutated copy of the module (gone once
    the next module runs)."""
    text = (clone / "mutants" / module.path).read_text()
    functions = {node.name: ast.get_source_segment(text, node) or "" for node in ast.walk(ast.parse(text))
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    parts = []
    for name in names:
        key = name.rpartition(".")[2]
        original = functions.get(key.rpartition("__mutmut_")[0] + "__mutmut_orig", "")
        mutant = functions.get(key, "(source not found)").replace(key, key.rpartition("__mutmut_")[0] + "__mutmut_orig", 1)
        diff = difflib.unified_diff(original.splitlines(), mutant.splitlines(), lineterm="", n=0)
        parts.append(f"# {name}\n" + "\n".join(line for line in diff if not line.startswith(("---", "+++"))) + "\n")
    return "\n".join(parts)


def run_module(clone: Path, module: Module, timeout: int, lock: bool = True) -> dict[str, str]:
    subprocess.run(["rm", "-rf", str(clone / "mutants")], check=True)
    _write_config(clone, module)
    patterns = [f"{_dotted(module.path)}.{fn}__mutmut_*" for fn in module.functions]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    cmd = ["flock", "/tmp/heavy.lock", "nice", "-n", "5"] if lock else []
    cmd += ["timeout", str(timeout), str(clone / ".venv/bin/mutmut"), "run", "--max-children", "1", *patterns]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=clone, env=env, stdout=subprocess.DEVNULL)
    wanted = {k: v for k, v in _results(clone).items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    return wanted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=REPO)
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/mut"))
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per module")
    parser.add_argument("--no-lock", action="store_true",
                        help="the caller holds /tmp/heavy.lock for the whole run (no queueing between modules)")
    parser.add_argument("modules", nargs="*", help="module names (default: all); a prefix is enough")
    args = parser.parse_args()
    _ensure_mutmut()
    clone = _clone(args.source.resolve(), args.work)
    chosen = [m for m in MODULES if not args.modules or any(m.name.startswith(p) for p in args.modules)]
    rows = []
    for module in chosen:
        statuses = run_module(clone, module, args.timeout, lock=not args.no_lock)
        equivalent = [k for k in statuses if k in EQUIVALENT]
        counted = {k: v for k, v in statuses.items() if k not in EQUIVALENT}
        killed = sum(v == "killed" for v in counted.values())
        alive = sorted(k for k, v in counted.items() if v == "survived")
        timeout = sum(v == "timeout" for v in counted.values())
        unchecked = sum(v == "not checked" for v in counted.values())  # the module's time limit came first
        other = len(counted) - killed - len(alive) - timeout - unchecked
        checked = killed + len(alive) + timeout
        score = 100.0 * (killed + timeout) / checked if checked else 0.0
        rows.append((module.name, len(counted), killed, len(alive), timeout, unchecked, other, len(equivalent),
                     score))
        for name in alive:
            print(f"  survived: {name}", flush=True)
        if alive:
            kept = args.work / "survivors" / (module.name.replace(" ", "_").replace("(", "").replace(")", "") + ".diff")
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(mutant_sources(clone, module, alive))
            print(f"  (their code: {kept})", flush=True)
        print(f"{module.name}: {killed} killed, {len(alive)} survived, {timeout} timeout, {unchecked} not checked, "
              f"{other} other (of {len(counted)}; {len(equivalent)} equivalent excluded): {score:.1f}%", flush=True)
    print("\n| module | mutants | killed | survived | timeout | not checked | other | equivalent | score |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, total, killed, survived, timeout, unchecked, other, excluded, score in rows:
        print(f"| {name} | {total} | {killed} | {survived} | {timeout} | {unchecked} | {other} | {excluded} | "
              f"{score:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
