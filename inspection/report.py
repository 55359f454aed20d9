"""`tokenlearner report`: one self-contained HTML page about a pipeline run, with its figures as PNG files beside it.

Everything comes from what the run recorded: the components and artifacts from ML Metadata (`summary.collect`),
the learning curves from the Trainer's `history.csv` (or its TensorBoard events), the confusion matrix and the
per-class accuracy from the Evaluator's TFMA output, the test predictions and the TokenLearner attention maps from
the Trainer's exported model run on the ImportExampleGen test split.
"""
from __future__ import annotations

import csv
import glob
import json
import logging
import math
import os
from typing import Optional

import numpy as np
from ml_metadata.proto import metadata_store_pb2

from components.drift_records import SpanCheck
from pipeline.config import PipelineConfig
from inspection import report_figures as figures
from inspection import history as loop_history_lib, report_html, run_store, summary
from inspection.report_html import ClassMetrics, Figure, LineageRow, Report
from inspection.run_store import CANDIDATE
from trainer import contract, features, serving_api
from trainer.config import TrainerConfig

log = logging.getLogger(__name__)

HISTORY_METRICS = ("loss", "accuracy")  # and the top-k metric (figures.TOP_K_METRIC: top5_accuracy for CIFAR-10)
_ACCURACY = "sparse_categorical_accuracy"
_TOP_K = "sparse_top_k_categorical_accuracy"  # TFMA's name whatever k is (pipeline.eval_config: cfg.top_k)
BASELINE_MODEL_KEY = "baseline_model"  # the Evaluator's input (tfx standard_component_specs.BASELINE_MODEL_KEY)


class ReportError(ValueError):
    """The run lacks what the report needs; the message names the artifact or file."""


# ---- reading the run --------------------------------------------------------------------------------------------

def _step(run: summary.RunSummary, component: str) -> Optional[summary.Step]:
    return next((s for s in run.steps if s.component == component), None)


def artifact(run: summary.RunSummary, component: str, type_name: str, required: bool = True):
    """The artifact of `type_name` that `component` output in this run (several components output a Model)."""
    step = _step(run, component)
    found = step.outputs.get(type_name, []) if step else []
    if not found and required:
        state = f"its execution is {step.status}" if step else "it did not run"
        raise ReportError(f"run {run.run_id}: no {type_name} artifact from {component} ({state})")
    return found[0] if found else None


def _producer(store, artifact_id: int) -> Optional[metadata_store_pb2.Execution]:
    """The execution that first produced an artifact (a cached execution re-outputs it later)."""
    ids = sorted(e.execution_id for e in store.get_events_by_artifact_ids([artifact_id])
                 if e.type == metadata_store_pb2.Event.OUTPUT)
    return store.get_executions_by_id(ids[:1])[0] if ids else None


def lineage(store, start_ids: list[int]) -> list[LineageRow]:
    """Upstream walk from the given artifacts: who produced each and from which inputs, newest first."""
    rows, seen, queue = [], set(), list(start_ids)
    while queue:
        artifact_id = queue.pop(0)
        if artifact_id in seen:
            continue
        seen.add(artifact_id)
        artifact = store.get_artifacts_by_id([artifact_id])[0]
        type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
        execution = _producer(store, artifact_id)
        inputs: tuple[int, ...] = ()
        producer = ""
        if execution is not None:
            producer = f"{run_store.node_name(store, execution)} (execution {execution.id})"
            inputs = tuple(sorted(e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                                  if e.type == metadata_store_pb2.Event.INPUT))
            queue.extend(inputs)
        rows.append(LineageRow(artifact_id, type_name, artifact.uri, producer, inputs))
    return rows


def evaluator_baseline(store, run: summary.RunSummary) -> Optional[metadata_store_pb2.Artifact]:
    """The Model artifact the run's Evaluator compared with: its `baseline_model` input as ML Metadata recorded it
    (the resolver's output is recorded as an internal output, not one a run lists); None on a first run."""
    step = _step(run, contract.EVALUATOR)
    if step is None or not step.execution_id:
        return None
    found = run_store.input_artifacts(store, step.execution_id, BASELINE_MODEL_KEY)
    return found[0] if found else None


def trainer_config(store, model_artifact_id: int, fallback: TrainerConfig) -> TrainerConfig:
    """The settings the model was trained with, from the Trainer execution's custom_config (config.json holds only
    the latest run's settings)."""
    execution = _producer(store, model_artifact_id)
    # TFX records a component's exec properties as the execution's custom properties (JSON strings).
    if execution is not None and "custom_config" in execution.custom_properties:
        custom = json.loads(execution.custom_properties["custom_config"].string_value or "{}")
        if contract.TRAINER_CONFIG_KEY in custom:
            return TrainerConfig.from_dict(custom[contract.TRAINER_CONFIG_KEY])
    log.warning("no trainer settings recorded with model artifact %d; showing those of config.json",
                model_artifact_id)
    return fallback


def learning_curves(model_run_dir: str) -> dict[str, list[float]]:
    """Per-epoch metrics (loss, accuracy, top-k accuracy (top5_accuracy for 6 classes or more) and their val_
    versions) from the Trainer's history.csv, or from its TensorBoard event files when the CSV is missing."""
    path = os.path.join(model_run_dir, contract.HISTORY_FILE)
    if os.path.isfile(path):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise ReportError(f"{path}: no epochs recorded")
        return {k: [float(r[k]) for r in rows] for k in rows[0] if k != "epoch"}
    history = _tensorboard_curves(model_run_dir)
    if not history:
        raise ReportError(f"{model_run_dir}: neither history.csv nor TensorBoard epoch_* scalars")
    return history


def _tensorboard_curves(model_run_dir: str) -> dict[str, list[float]]:
    import tensorflow as tf

    history: dict[str, list[float]] = {}
    for subdir, prefix in (("train", ""), ("validation", "val_")):
        by_step: dict[str, dict[int, float]] = {}
        for path in sorted(glob.glob(os.path.join(model_run_dir, subdir, "events.out.tfevents.*"))):
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    name = value.tag[len("epoch_"):]
                    if value.tag.startswith("epoch_") and (name in HISTORY_METRICS
                                                           or figures.TOP_K_METRIC.fullmatch(name)):
                        number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                        by_step.setdefault(prefix + name, {})[event.step] = number
        history.update({k: [v[s] for s in sorted(v)] for k, v in by_step.items()})
    return history


def _overall_and_label_slices(uri: str):
    """(overall metrics, {label: metrics}) of the candidate model from a TFMA evaluation."""
    overall, per_label = {}, {}
    for keys, models in run_store.slice_metrics(uri):
        values = models.get(CANDIDATE, {})
        if not keys:
            overall = values
        elif len(keys) == 1 and keys[0].column == features.LABEL_KEY:
            per_label[int(keys[0].int64_value)] = values
    return overall, per_label


def class_metrics(uri: str, num_classes: int) -> tuple[dict[str, float], ClassMetrics]:
    overall, per_label = _overall_and_label_slices(uri)
    if not overall:
        raise ReportError(f"{uri}: no overall slice in the TFMA metrics")
    accuracy = np.array([per_label.get(k, {}).get(_ACCURACY, math.nan) for k in range(num_classes)])
    counts = np.array([int(per_label.get(k, {}).get("example_count", 0)) for k in range(num_classes)])
    return overall, ClassMetrics(accuracy, counts)


def confusion_matrix(uri: str, num_classes: int) -> np.ndarray:
    """(true, predicted) counts on the overall slice, from TFMA's MultiClassConfusionMatrixPlot (argmax, its
    default threshold 0)."""
    import tensorflow_model_analysis as tfma

    for plots in tfma.load_plots(uri):
        if plots.slice_key.single_slice_keys:
            continue
        for kv in plots.plot_keys_and_values:
            if kv.key.model_name not in ("", CANDIDATE) or not kv.value.HasField(
                    "multi_class_confusion_matrix_at_thresholds"):
                continue
            matrices = kv.value.multi_class_confusion_matrix_at_thresholds.matrices
            matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
            for entry in matrices[0].entries:
                if 0 <= entry.actual_class_id < num_classes and 0 <= entry.predicted_class_id < num_classes:
                    matrix[entry.actual_class_id, entry.predicted_class_id] += round(entry.num_weighted_examples)
            return matrix
    raise ReportError(f"{uri}: no multi-class confusion matrix plot for the overall slice")


def read_test_split(examples_uri: str, limit: int, size: int) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Serialized tf.Examples, images (uint8 (N, size, size, 3), decoded and brought to the model's input size as
    Transform does: the stored images may differ in size) and labels of the test split ImportExampleGen wrote."""
    import tensorflow as tf

    from trainer import preprocessing

    split_dir = contract.split_dir(contract.TEST)
    files = sorted(glob.glob(os.path.join(examples_uri, split_dir, "*.gz")))
    if not files:
        raise ReportError(f"{examples_uri}/{split_dir}: no *.gz TFRecord files")
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)]
    images, labels = [], []
    for record in records:
        feature = tf.train.Example.FromString(record).features.feature
        images.append(preprocessing.decode_image(feature[features.IMAGE_KEY].bytes_list.value[0], size).numpy())
        labels.append(feature[features.LABEL_KEY].int64_list.value[0])
    return records, np.stack(images), np.array(labels)


def predict(serving_dir: str, records: list[bytes], batch: int = 256) -> np.ndarray:
    """Probabilities from the exported model's serving_tf_example signature: what the Evaluator ran."""
    import tensorflow as tf

    signature = tf.saved_model.load(serving_dir).signatures[serving_api.TF_EXAMPLE_SIGNATURE]
    out = [signature(**{serving_api.EXAMPLES_KEY: tf.constant(records[i:i + batch])})[serving_api.PROBABILITIES].numpy()
           for i in range(0, len(records), batch)]
    return np.concatenate(out)


def load_keras_model(serving_dir: str):
    """The Keras model inside the Trainer's SavedModel (keras_metadata.pb), with our custom layers."""
    import tf_keras as keras

    from trainer import vit  # noqa: F401  (imports, so registers, every custom layer for deserialization)

    return keras.models.load_model(serving_dir, compile=False)


def token_learner_layer(model):
    """The model's first TokenLearner (v1 or v1.1; with TokenFuser there is one per later block), or None."""
    return next((layer for layer in model.layers if hasattr(layer, "attention_maps")), None)


def attention_maps(model, views) -> Optional[np.ndarray]:
    """(N, T, side, side) weights of the model's first TokenLearner on normalized views (N, S, S, 3), or None
    without one.

    The sub-model up to the TokenLearner's input gives its feature map, on which the layer's own
    `attention_maps` runs: the same weights its call() pools with."""
    import tf_keras as keras

    layer = token_learner_layer(model)
    if layer is None:
        return None
    feature_map = keras.Model(model.inputs, layer.input)(views, training=False)  # (N, side, side, D)
    maps = layer.attention_maps(feature_map).numpy()  # (N, T, side*side)
    return maps.reshape(maps.shape[0], maps.shape[1], feature_map.shape[1], feature_map.shape[2])


def token_attention(model, serving_dir: str, records: list[bytes], images: np.ndarray,
                    cfg: TrainerConfig) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(display crops (N, S, S, 3) uint8, maps (N, T, side, side)) for a few test examples, or None.

    The model input is what serving feeds it: the Transform output (the SavedModel's transform_features
    signature) in the deterministic eval view."""
    import tensorflow as tf

    from trainer import inputs

    transform = tf.saved_model.load(serving_dir).signatures[serving_api.TRANSFORM_SIGNATURE]
    transformed = transform(**{serving_api.EXAMPLES_KEY: tf.constant(records)})
    maps = attention_maps(model, inputs.eval_view(transformed[features.transformed_name(features.IMAGE_KEY)], cfg))
    if maps is None:
        return None
    # The same crop of the stored image, for display: what the maps lie over.
    shown = inputs.eval_view(tf.cast(images, tf.float32), cfg)
    return np.clip(np.round(shown.numpy()), 0, 255).astype(np.uint8), maps


def _model_stats(*dirs: str) -> dict:
    """model_stats.json (parameters, FLOPs; trainer/flops.py) where the Trainer wrote one; {} for older runs."""
    for d in dirs:
        path = os.path.join(d, contract.MODEL_STATS_FILE)
        if os.path.isfile(path):
            with open(path) as f:
                return json.load(f)
    return {}


def _gflops(stats: dict) -> str:
    """trainer/flops.py's two conventions: direct (attention included) and keras.io's profiler count."""
    if "gflops" not in stats:
        return "n/a"
    text = f"{stats['gflops']:.4f} (2 × multiply-adds, attention included)"
    if "keras_io_gflops" in stats:
        text += f"; keras.io convention {stats['keras_io_gflops']:.4f}"
    return text


def _fmt(value: Optional[float], pattern: str = "{:.4f}") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def _facts(config: PipelineConfig, run: summary.RunSummary, cfg: TrainerConfig, *, params: int, stats: dict,
           overall: dict[str, float], history: dict[str, list[float]], best_epoch: Optional[int], baseline,
           serving_dir: str, times: Optional[summary.EpochTimes] = None, unchanged_from: Optional[str] = None,
           baseline_version: Optional[str] = None) -> list[tuple[str, list[tuple[str, str]]]]:
    """The model card: (section, [(fact, value)]). `unchanged_from`: the model a Trainer without new data
    re-exported (its training facts), whose training `times` and curves are those the card shows. `baseline`: the
    Model artifact the Evaluator compared with (None: none), published as `baseline_version`."""
    if cfg.token_learner == "none":
        variant = f"ViT without TokenLearner ({cfg.num_patches} tokens in every block)"
        tokens = f"{cfg.num_patches}"
    else:
        form = ""
        if cfg.token_learner == "v1.1":
            form = f" ({cfg.token_learner_groups} groups)" if cfg.token_learner_groups else " (MLP)"
        where = (f"+ TokenFuser around blocks {cfg.token_learner_layer + 1}–{cfg.num_layers - 1}" if cfg.token_fuser
                 else f"after block {cfg.token_learner_layer}")
        variant = f"ViT + TokenLearner {cfg.token_learner}{form} {where} of {cfg.num_layers} blocks"
        tokens = f"{cfg.num_patches} patches → {cfg.num_tokens} learned tokens"
    manifest = run_store.dataset_manifest(config)
    best = (f"{best_epoch} of {len(history['loss'])} (validation accuracy {history['val_accuracy'][best_epoch - 1]:.4f})"
            if best_epoch else "n/a")
    not_pushed = getattr(run, "not_pushed_reason", "")
    return [
        ("Model", [
            ("variant", variant), ("tokens", tokens),
            ("parameters", f"{params:,}"), ("GFLOPs per image", _gflops(stats)),
            ("input", f"every image brought to {cfg.input_size}×{cfg.input_size}×3 (Transform), viewed at "
                      f"{cfg.image_size}×{cfg.image_size}×3"),
            ("tokenizer", f"{cfg.conv_tokenizer_stages} × (conv 3×3, ReLU, max-pool /2) on a {cfg.image_size}×"
                          f"{cfg.image_size} view → {cfg.grid_side}×{cfg.grid_side} tokens" if cfg.conv_tokenizer_stages
             else f"{cfg.patch_size}×{cfg.patch_size} patches of a {cfg.image_size}×{cfg.image_size} view"),
            ("width · heads · MLP", f"{cfg.projection_dim} · {cfg.num_heads} · {cfg.mlp_dim}"),
        ]),
        ("Data", [
            ("dataset", config.data_root),
            ("classes", f"{len(config.class_names)}" + (f": {', '.join(config.class_names)}"
                                                         if len(config.class_names) <= 10 else "")),
            ("source", f"{manifest.get('source', 'n/a')} ({manifest.get('format', '?')})"),
            ("limit", str(manifest.get("limit") or "all images")),
            *[(f"{split} examples", f"{count:,}") for split, count in run.examples.items()],
            ("anomalies", ", ".join(run.anomalies) or "none"),
            ("span check", _span_check_text(getattr(run, "span_check", None))),
        ]),
        ("Recipe", [
            ("epochs · batch", f"{cfg.epochs} · {cfg.batch_size}"),
            ("optimizer", f"AdamW, weight decay {cfg.weight_decay:g}"
                          + (f", gradient norm clipped at {cfg.clip_norm:g}" if cfg.clip_norm else "")),
            ("learning rate", f"{cfg.learning_rate:g} constant" if cfg.lr_schedule == "constant" else
             f"{cfg.learning_rate:g} peak, {cfg.warmup_fraction:.0%} warmup, {cfg.lr_schedule} decay"),
            ("loss", "cross-entropy" + (f", label smoothing {cfg.label_smoothing:g}" if cfg.label_smoothing else "")),
            ("augmentation", f"resize to {cfg.resize_to}"
                             + (f", pad {cfg.crop_padding}" if cfg.crop_padding else "")
                             + f", random {cfg.image_size} crop, horizontal flip"),
            ("dropout · stochastic depth", f"{cfg.dropout:g} · {cfg.stochastic_depth:g}"),
            ("seed", str(cfg.seed)),
            ("epoch kept", best),
            ("training time", (times.text if times else "n/a (no epoch_times.csv: a run older than the record)")
             + (f"; trained for {unchanged_from}, which this run re-exported unchanged (no new data)"
                if unchanged_from else "")),
        ]),
        ("Test metrics (TFMA)", [
            ("accuracy", _fmt(overall.get(_ACCURACY))),
            (f"top-{cfg.top_k} accuracy", _fmt(overall.get(_TOP_K))),
            ("examples", _fmt(overall.get("example_count"), "{:,.0f}")),
        ]),
        ("Blessing and push", [
            ("blessed", {True: "yes", False: "no", None: "n/a"}[run.blessed]),
            ("thresholds", f"accuracy ≥ {config.blessing_floor:.4g}"
                           + (" (relative to chance, 1/N)" if config.accuracy_floor is None else "")
                           + f", at most {config.regression_tolerance:g} below the baseline"),
            ("baseline model", _baseline_text(baseline, baseline_version)),
            ("test accuracy", _beside_baseline(overall.get(_ACCURACY), getattr(run, "baseline_accuracy", None),
                                               baseline is not None)),
            ("pushed version", os.path.basename(run.pushed_to) if run.pushed_to else f"not pushed {not_pushed}"),
            ("serving path", run.pushed_to or "–"),
        ]),
        ("Run", [
            ("pipeline", config.pipeline_name),
            ("pipeline run id", run.run_id),
            ("components", ", ".join(f"{sum(s.status == k for s in run.steps)} {k}"
                                     for k in ("ran", "cached", "FAILED") if any(s.status == k for s in run.steps))),
            ("trained model", serving_dir),
            ("metadata", config.metadata_path),
        ]),
    ]


def _span_check_text(check: Optional[SpanCheck]) -> str:
    return check.summary() if check is not None else "none recorded (one span in the training window, or a run from before the records)"


def _baseline_text(baseline, version: Optional[str]) -> str:
    if baseline is None:
        return "none (first blessed model)"
    published = f"version {version}" if version else "not published"
    return f"Model artifact #{baseline.id} ({published}): {baseline.uri}"


def _beside_baseline(candidate: Optional[float], baseline: Optional[float], has_baseline: bool) -> str:
    """This run's model and the baseline on the same test split (the Evaluator ran both)."""
    text = f"this model {_fmt(candidate)}"
    if not has_baseline:
        return text + " (no baseline to compare with)"
    text += f", baseline {_fmt(baseline)}"
    if candidate is not None and baseline is not None:
        text += f" ({candidate - baseline:+.4f})"
    return text + ", on this run's test split"


# ---- building the report -------------------------------------------------------------------------------------

def _training_figures(model_run_dir: str, out_dir: str) -> tuple[list[Figure], dict, Optional[int]]:
    history = learning_curves(model_run_dir)
    best_epoch = int(np.argmax(history["val_accuracy"])) + 1 if "val_accuracy" in history else None
    figures.learning_curves(history, best_epoch, os.path.join(out_dir, "learning_curves.png"))
    history_file = os.path.join(model_run_dir, contract.HISTORY_FILE)
    source = contract.HISTORY_FILE if os.path.isfile(history_file) else "TensorBoard events"
    return [Figure("learning_curves.png", "Learning curves",
                   f"Per epoch, from the Trainer's {source} in {model_run_dir}. Training metrics are on augmented "
                   f"crops with dropout; validation on the eval split's central crops. The dotted line marks the "
                   f"epoch kept (best validation accuracy).", figures.LEARNING_CURVES_SIZE)], history, best_epoch


def _evaluation_figures(evaluation_uri: str, class_names: list[str], out_dir: str):
    overall, per_class = class_metrics(evaluation_uri, len(class_names))
    matrix = confusion_matrix(evaluation_uri, len(class_names))
    figures.confusion_matrix(matrix, class_names, os.path.join(out_dir, "confusion_matrix.png"))
    figures.per_class_accuracy(per_class.accuracy, per_class.counts, overall.get(_ACCURACY), class_names,
                               os.path.join(out_dir, "per_class_accuracy.png"))
    counts = "" if len(class_names) <= figures.CONFUSION_COUNTS_UP_TO else " Counts are in the table below."
    shown = [Figure("confusion_matrix.png", "Confusion matrix (test split)",
                    f"TFMA MultiClassConfusionMatrixPlot from the Evaluator ({evaluation_uri}): rows the true "
                    f"class, columns the predicted (argmax) class.{counts}", figures.CONFUSION_MATRIX_SIZE),
             Figure("per_class_accuracy.png", "Accuracy per class (test split)",
                    "TFMA sparse_categorical_accuracy on the Evaluator's per-label slices.",
                    figures.per_class_size(len(class_names)))]
    return shown, overall, per_class, matrix


def _model_figures(keras_model, serving_dir: str, examples_uri: str, cfg: TrainerConfig, class_names: list[str],
                   out_dir: str, max_test_examples: int) -> tuple[list[Figure], list[str]]:
    """The prediction grid and the attention maps: the trained model run on the test split."""
    records, images, labels = read_test_split(examples_uri, max_test_examples, cfg.input_size)
    predictions = figures.Predictions(images, labels, predict(serving_dir, records))
    figures.prediction_grid(predictions, class_names, os.path.join(out_dir, "test_predictions.png"))
    mistakes = int((predictions.predicted != labels).sum())
    shown = [Figure("test_predictions.png", "Test images, worst mistakes first",
                    f"{len(records):,} test images through the trained model's serving_tf_example signature; "
                    f"{mistakes:,} misclassified. Ordered by the probability given to the true class, lowest first. "
                    f"Title: predicted class and its probability; below, the true class and its probability.",
                    figures.PREDICTIONS_SIZE)]
    # The first test image of each of the first classes, so the maps can be compared across content; with fewer
    # classes than rows, the next test images fill the rest.
    picks = [int(np.flatnonzero(labels == c)[0]) for c in range(len(class_names))
             if (labels == c).any()][:figures.ATTENTION_IMAGES]
    picks += [i for i in range(len(labels)) if i not in picks][:figures.ATTENTION_IMAGES - len(picks)]
    attention = token_attention(keras_model, serving_dir, [records[i] for i in picks], images[picks], cfg)
    if attention is None:
        return shown, [f"No TokenLearner attention figure: the model ({keras_model.name}, token_learner="
                       f"{cfg.token_learner!r}) has no TokenLearner layer."]
    views, maps = attention
    titles = [f"{figures.short_name(class_names[labels[i]])} → "
              f"{figures.short_name(class_names[predictions.predicted[i]])}" for i in picks]
    figures.attention_maps(views, maps, titles, os.path.join(out_dir, "token_attention.png"))
    layer = token_learner_layer(keras_model)
    more = (f" (the first {figures.ATTENTION_MAX_TOKENS} shown)" if maps.shape[1] > figures.ATTENTION_MAX_TOKENS
            else "")
    shown.append(Figure(
        "token_attention.png", "TokenLearner attention maps",
        f"The {maps.shape[1]} spatial maps{more} of layer {layer.name} ({type(layer).__name__}) over the "
        f"{maps.shape[2]}×{maps.shape[3]} patch grid of the central crop the model sees: each patch's brightness "
        f"is its weight, stretched to the map's own range (in the panel title). Row title: true → predicted.",
        figures.attention_size(maps.shape[1])))
    return shown, []


def build(config: PipelineConfig, out_dir: str, run_id: Optional[str] = None, max_test_examples: int = 10_000,
          store=None) -> str:
    """Writes report.html and its PNG figures into out_dir; returns the HTML path."""
    missing = run_store.missing_store(config)
    if missing:
        raise ReportError(missing)
    store = store or run_store.open_store(config)
    try:
        run = summary.collect(config, run_id, store=store)
    except LookupError as e:
        raise ReportError(f"{config.metadata_path}: {e}") from None
    model = artifact(run, contract.TRAINER, "Model")
    model_run = artifact(run, contract.TRAINER, "ModelRun")
    evaluation = artifact(run, contract.EVALUATOR, "ModelEvaluation")
    examples = artifact(run, contract.EXAMPLE_GEN, "Examples")
    blessing = artifact(run, contract.EVALUATOR, "ModelBlessing", required=False)
    pushed = artifact(run, contract.PUSHER, "PushedModel", required=False)
    baseline = evaluator_baseline(store, run)
    cfg = trainer_config(store, model.id, config.trainer)
    serving_dir = os.path.join(model.uri, contract.SERVING_MODEL_DIR)
    class_names = list(config.class_names)
    os.makedirs(out_dir, exist_ok=True)

    trained = summary.trained_in(model_run.uri)  # a run without new data: the re-exported model's own training
    shown, history, best_epoch = _training_figures(trained, out_dir)
    evaluated, overall, per_class, matrix = _evaluation_figures(evaluation.uri, class_names, out_dir)
    keras_model = load_keras_model(serving_dir)
    predicted, notes = _model_figures(keras_model, serving_dir, examples.uri, cfg, class_names, out_dir,
                                      max_test_examples)
    stats = _model_stats(trained, os.path.join(serving_dir, contract.ASSETS_EXTRA))
    facts = _facts(config, run, cfg, params=keras_model.count_params(), stats=stats, overall=overall,
                   history=history, best_epoch=best_epoch, baseline=baseline, serving_dir=serving_dir,
                   times=summary.epoch_times(trained),
                   unchanged_from=summary.training_facts(model_run.uri).get("unchanged_from"),
                   baseline_version=run_store.pushed_version(store, baseline.id) if baseline is not None else None)
    report = Report(config=config, run=run, trainer=cfg, trainer_name=keras_model.name, facts=facts,
                    figures=shown + evaluated + predicted, notes=notes, confusion=matrix, per_class=per_class,
                    lineage=lineage(store, [a.id for a in (pushed, blessing, evaluation) if a is not None]),
                    history=loop_history_lib.loop_history(config, store))
    path = os.path.join(out_dir, "report.html")
    with open(path, "w") as f:
        f.write(report_html.render(report))
    return path
