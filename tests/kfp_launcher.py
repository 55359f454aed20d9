"""What the KFP v2 launcher does for one task of a compiled spec, done on this machine.

For a task it builds the `ExecutorInput` (the task's constant parameters, the input artifacts it is given, a fresh
URI per output artifact, the output metadata file), puts its JSON where the executor's container args hold the
`{{$}}` placeholder, and runs the container's own `command` + `args` in a subprocess; then it reads back the
`ExecutorOutput` the entry point wrote. As in kubeflow/pipelines backend/src/v2/driver/driver.go (`ExecutorInput`
with inputs, outputs and `outputFile`; a task's `runtimeValue.constant` becomes `inputs.parameterValues`, the only
parameter form it fills) and tfx/orchestration/kubeflow/v2/container/kubeflow_v2_run_executor.py (pipeline spec
2.1: reads `parameterValues`, typed by `--json_serialized_inputs_spec_args`; writes the `ExecutorOutput` to
`outputs.outputFile`).
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path
from typing import Callable

PLACEHOLDER = "{{$}}"


@dataclasses.dataclass(frozen=True)
class TaskRun:
    task: str
    command: list[str]  # what ran, the ExecutorInput JSON in place of the placeholder
    outputs: dict[str, dict]  # output name -> the RuntimeArtifact the executor reported (uri, metadata)
    log: str
    seconds: float

    def uri(self, name: str) -> Path:
        return Path(self.outputs[name]["uri"])


def artifact(spec: dict, task: str, name: str, uri: str | Path, metadata: dict | None = None) -> dict:
    """A RuntimeArtifact for input `name` of `task`, typed as the spec declares that input."""
    component = _component(spec, task)
    definition = component["inputDefinitions"]["artifacts"][name]
    return {"name": f"test/artifacts/{task}-{name}", "type": definition["artifactType"], "uri": str(uri),
            "metadata": metadata or {}}


def _component(spec: dict, task: str) -> dict:
    return spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]


def executor_input(spec: dict, task: str, inputs: dict[str, dict | list[dict]], root: Path,
                   rewrite: Callable[[str], str]) -> dict:
    """The ExecutorInput of `task`: `rewrite` maps the spec's shared-storage paths to local ones. An input is one
    artifact, or a list of them: `[]` for what a resolver task found nothing for (the latest blessed model on a
    pipeline's first run)."""
    component = _component(spec, task)
    declared = component.get("inputDefinitions", {}).get("artifacts", {})
    missing = {n for n, d in declared.items() if not d.get("isOptional")} - set(inputs)
    assert not missing, f"{task}: required inputs not given: {sorted(missing)}"
    assert set(inputs) <= set(declared), f"{task}: unknown inputs {sorted(set(inputs) - set(declared))}"
    values = {}
    for name, value in spec["root"]["dag"]["tasks"][task].get("inputs", {}).get("parameters", {}).items():
        constant = value["runtimeValue"]["constant"]  # a JSON value (google.protobuf.Value): rewrite inside it too
        values[name] = json.loads(rewrite(json.dumps(constant)))
    outputs = {name: {"artifacts": [{"name": f"test/artifacts/{task}-{name}", "type": d["artifactType"],
                                     "uri": str(root / task / name)}]}
               for name, d in component.get("outputDefinitions", {}).get("artifacts", {}).items()}
    return {"inputs": {"parameterValues": values,
                       "artifacts": {name: {"artifacts": a if isinstance(a, list) else [a]}
                                     for name, a in inputs.items()}},
            "outputs": {"artifacts": outputs, "outputFile": str(root / task / "executor_output.json")}}


def run_task(spec: dict, task: str, inputs: dict[str, dict | list[dict]], root: Path, env: dict[str, str],
             rewrite: Callable[[str], str], timeout: float = 600) -> TaskRun:
    """Runs `task`'s container command with its ExecutorInput; cwd is an empty folder, as in a fresh container."""
    component = _component(spec, task)
    container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    payload = json.dumps(executor_input(spec, task, inputs, root, rewrite))
    assert container["args"].count(PLACEHOLDER) == 1, container["args"]
    command = list(container["command"]) + [payload if a == PLACEHOLDER else a for a in container["args"]]
    workdir = root / task / "cwd"
    workdir.mkdir(parents=True)
    start = time.monotonic()
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - start
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"{task} exited {done.returncode}:\n{log[-4000:]}"
    written = json.loads((root / task / "executor_output.json").read_text())
    outputs = {name: value["artifacts"][0] for name, value in written.get("artifacts", {}).items()}
    return TaskRun(task=task, command=command, outputs=outputs, log=log, seconds=seconds)
