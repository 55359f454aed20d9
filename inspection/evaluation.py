"""The pipeline's Evaluator, run again outside the pipeline on a finished run's artifacts: to time it
(bench/evaluator.py) and to check that a change of its settings keeps every metric and the blessing (tests).

It calls TFX's own Evaluator executor with the inputs the pipeline gave it (test split of the run's examples, the
Trainer's model, optionally a baseline model) and an EvalConfig plus Beam arguments chosen by the caller.
"""
from __future__ import annotations

import json
import os
import time
from typing import Sequence

import ml_metadata as mlmd
import tensorflow_model_analysis as tfma
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from inspection import run_store
from trainer import contract


# How the Evaluator ran before issue 10 ("before": the pipeline's Beam arguments, TFMA's adaptive inference batches,
# the model revived as a Keras model with its compiled metrics), each change alone, and as the pipeline runs it now
# ("after").
_CHANGES = {"before": (), "batch": ("batch",), "in_memory": ("in_memory",), "tf_generic": ("tf_generic",),
            "after": ("batch", "in_memory", "tf_generic")}
VARIANTS = tuple(_CHANGES)


def variant_settings(config, variant: str) -> tuple[tfma.EvalConfig, list[str]]:
    """(EvalConfig, Beam arguments) of the Evaluator of `config` (a PipelineConfig) in `variant`."""
    from pipeline import pipeline

    changes = _CHANGES[variant]
    eval_config = pipeline.eval_config(config)
    for spec in eval_config.model_specs:
        if "batch" not in changes:
            spec.ClearField("inference_batch_size")
        if "tf_generic" not in changes:
            spec.ClearField("model_type")  # TFMA detects Keras and adds the compiled metrics
    if "tf_generic" not in changes:
        eval_config.options.ClearField("include_default_metrics")
    beam_args = list(config.beam_pipeline_args)
    if "in_memory" in changes:
        beam_args += config.beam.evaluator_args()
    return eval_config, beam_args


def latest_artifact(store: mlmd.MetadataStore, type_name: str):
    """The newest artifact of `type_name` ("Examples", "Model") in the store, as a TFX artifact."""
    found = store.get_artifacts_by_type(type_name)
    if not found:
        raise LookupError(f"no {type_name} artifact in the metadata store")
    artifact = getattr(standard_artifacts, type_name)()
    artifact.set_mlmd_artifact(max(found, key=lambda a: a.create_time_since_epoch))
    return artifact


def examples_from_dataset(dataset_dir: str, work_dir: str, split: str = contract.TEST):
    """An Examples artifact whose `split` is a dataset folder's `split/` TFRecords (`tokenlearner data`), so the
    Evaluator can be timed on more test images than the run used."""
    uri = os.path.join(work_dir, "examples")
    os.makedirs(uri, exist_ok=True)
    link = os.path.join(uri, f"{contract.SPLIT_PREFIX}{split}")
    if not os.path.islink(link):
        os.symlink(os.path.abspath(os.path.join(dataset_dir, split)), link)
    artifact = standard_artifacts.Examples()
    artifact.uri = uri
    artifact.split_names = artifact_utils.encode_split_names([split])
    return artifact


def run_evaluator(eval_config: tfma.EvalConfig, beam_args: Sequence[str], examples, model, output_dir: str,
                  baseline=None, split: str = contract.TEST) -> dict:
    """Runs the Evaluator executor; returns {"seconds", "metrics": {slice: {metric: value}}, "plots": {slice: plot},
    "blessed"}."""
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = os.path.join(output_dir, "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = os.path.join(output_dir, "blessing")
    for artifact in (evaluation, blessing):
        os.makedirs(artifact.uri, exist_ok=True)
    inputs = {"examples": [examples], "model": [model]}
    if baseline is not None:
        inputs["baseline_model"] = [baseline]
    executor = evaluator_executor.Executor(evaluator_executor.Executor.Context(
        beam_pipeline_args=list(beam_args), tmp_dir=os.path.join(output_dir, "tmp"), unique_id="evaluation"))
    start = time.perf_counter()
    executor.Do(inputs, {"evaluation": [evaluation], "blessing": [blessing]},
                {"eval_config": proto_utils.proto_to_json(eval_config), "example_splits": json.dumps([split])})
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "metrics": metric_values(evaluation.uri), "plots": plot_values(evaluation.uri),
            "blessed": os.path.exists(os.path.join(blessing.uri, "BLESSED"))}


def metric_values(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """{slice: {metric: value}} of an Evaluator output: every slice ("overall", "label=3"), every model
    ("candidate/…", "baseline/…") and the candidate-minus-baseline diffs ("…/diff")."""
    out: dict[str, dict[str, float]] = {}
    for record in tfma.load_metrics(evaluation_uri):
        items = [f"{k.column}={getattr(k, k.WhichOneof('kind'))}" for k in record.slice_key.single_slice_keys]
        for kv in record.metric_keys_and_values:
            if kv.value.HasField("double_value"):
                name = f"{kv.key.model_name or run_store.CANDIDATE}/{kv.key.name}" + ("/diff" if kv.key.is_diff else "")
                out.setdefault(",".join(items) or "overall", {})[name] = kv.value.double_value.value
    return out


def plot_values(evaluation_uri: str) -> dict[str, dict]:
    """{slice: plots as a dict} of an Evaluator output (the multi-class confusion matrix)."""
    from google.protobuf import json_format

    out = {}
    for record in tfma.load_plots(evaluation_uri):
        items = [f"{k.column}={getattr(k, k.WhichOneof('kind'))}" for k in record.slice_key.single_slice_keys]
        out[",".join(items) or "overall"] = json_format.MessageToDict(record.plot_keys_and_values[0].value) \
            if record.plot_keys_and_values else {}
    return out
