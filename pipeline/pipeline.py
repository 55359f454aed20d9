"""The pipeline graph, shared by every runner (local Beam, Kubeflow Pipelines v2, Vertex AI).

Node ids, split names, the Trainer's entry point and custom_config keys come from trainer/contract.py.

ImportExampleGen (the training window of the dataset's spans) -> StatisticsGen -> ExampleValidator (also: drift
between the newest two spans) -> Transform -> Trainer (warm-started from the latest blessed model) -> Evaluator
(against the same latest blessed model) -> Pusher, with the schema from ImportSchemaGen (the curated one; SchemaGen
on StatisticsGen's output with schema_path=infer).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

import tensorflow_model_analysis as tfma
from google.protobuf import wrappers_pb2
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from tfx.dsl.components.base import executor_spec

from components.pusher import AtomicPusherExecutor
from components.schema_gen import PackagedImportSchemaGen
from components.span_example_gen import SpanImportExampleGen
from components.trainer_component import trainer_component
from components.validator import GatedExampleValidator
from pipeline.config import PipelineConfig
from trainer import contract, features, serving_api
from trainer.contract import (BACKUP_DIR_KEY, CLASS_NAMES_KEY, EVAL, INPUT_SIZE_KEY, MODEL_NAME_KEY, PREPROCESSING_FN,
                              RUN_FN, SPLITS, TEST, TRAIN, TRAINER_CONFIG_KEY)

# Examples per model call in the Evaluator: a fixed, full batch (TFMA's default grows batches from 1 adaptively).
EVAL_BATCH_SIZE = 256


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Accuracy and top-k (k = 5, or N - 1 for N < 6 classes) on the test split, overall and per class (one slice
    per label of the dataset); blessing = at or above `config.blessing_floor` and no regression beyond the tolerance
    against the latest blessed model."""
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.blessing_floor}),
        change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                                     absolute={"value": -config.regression_tolerance}))
    return tfma.EvalConfig(
        # A plain SavedModel (tf_generic), not a Keras one, and no "default" metrics: for a Keras model TFMA adds the
        # model's compiled loss and metrics, and their combiner revives the whole Keras model in every Beam combine
        # stage (TFMA 0.47 keras_util.py: "skipping the shared handle", ~8 loads of 5 s per model here), only to
        # repeat the accuracy and top-k listed below. The signature is what TF Serving runs, so it is what we score.
        model_specs=[tfma.ModelSpec(signature_name=serving_api.TF_EXAMPLE_SIGNATURE, label_key=features.LABEL_KEY,
                                    prediction_key=serving_api.PROBABILITIES, inference_batch_size=EVAL_BATCH_SIZE,
                                    model_type=tfma.TF_GENERIC)],
        options=tfma.Options(include_default_metrics=wrappers_pb2.BoolValue(value=False)),
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.LABEL_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            # The gate is on the overall slice; per-class accuracies are reported, not gated.
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy", per_slice_thresholds=[
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=accuracy_threshold)]),
            tfma.MetricConfig(class_name="SparseTopKCategoricalAccuracy",
                              config=json.dumps({"k": config.trainer.top_k})),
            # The test split's cross-entropy (no label smoothing: the training loss's smoothing is a recipe setting).
            tfma.MetricConfig(class_name="SparseCategoricalCrossentropy"),
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        ])])


@dataclasses.dataclass(frozen=True)
class DataComponents:
    """The data-heavy front of the graph, every one a Beam job (the `beam_pipeline_args` decide where it runs)."""

    example_gen: Any
    statistics_gen: Any
    schema_gen: Any
    example_validator: Any
    transform: Any

    def __iter__(self):  # in pipeline order: `components=[*data, ...]`
        return iter([getattr(self, f.name) for f in dataclasses.fields(self)])


def data_components(config: PipelineConfig) -> DataComponents:
    """ImportExampleGen over the `train`, `eval`, `test` splits written by `tokenlearner data` (the newest
    `train_spans` spans of them, components/span_example_gen.py) -> StatisticsGen and
    the schema (curated or inferred) -> the gated ExampleValidator -> Transform (analyzed on `train`)."""
    example_gen = SpanImportExampleGen(
        input_base=config.data_root,
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name=name, pattern=f"{name}/{contract.SHARD_GLOB}") for name in SPLITS]),
        train_spans=config.train_spans,
    ).with_id(contract.EXAMPLE_GEN)
    if config.schema_path == "infer":
        statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
        schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"],
                                              infer_feature_shape=True)
    else:
        # A path, or a `package:` name resolved where the component runs (the default: the installed project's).
        schema_gen = PackagedImportSchemaGen(schema_file=config.schema_path).with_id(contract.IMPORT_SCHEMA_GEN)
        # With the curated schema `label` counts as categorical: its class histogram is what the drift check uses.
        statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"],
                                                      schema=schema_gen.outputs["schema"])
    # Fails the run on drift between the newest two spans (checked first), on anomalies and on label drift against
    # the train split, before anything trains: the Trainer waits for it.
    example_validator = GatedExampleValidator(statistics=statistics_gen.outputs["statistics"],
                                              schema=schema_gen.outputs["schema"],
                                              label_drift_threshold=config.label_drift_threshold,
                                              # drift between the window's newest two spans
                                              data_root=config.data_root, train_spans=config.train_spans,
                                              span_label_drift=config.span_label_drift,
                                              span_image_drift=config.span_image_drift,
                                              accept_drift=config.accept_drift)
    example_validator = example_validator.with_id(contract.EXAMPLE_VALIDATOR)
    # Analyze on train only; not materialized: the Trainer and every serving signature apply the same graph.
    # No pre/post-transform statistics: StatisticsGen has them, and input_size^2 x 3 float features per image are
    # costly. preprocessing_fn reads the size every image is brought to from custom_config.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, materialize=False, disable_statistics=True,
        splits_config=tfx.proto.SplitsConfig(analyze=[TRAIN]),
        custom_config={INPUT_SIZE_KEY: config.trainer.input_size})
    # Transform does not run on data that failed validation.
    transform.add_upstream_node(example_validator)
    return DataComponents(example_gen, statistics_gen, schema_gen, example_validator, transform)


def latest_blessed_model() -> Any:
    """The resolver of the latest blessed model: the Trainer's warm start and the Evaluator's baseline (none on a
    first run). One of the two resolvers Kubeflow Pipelines v2 and Vertex AI compile."""
    return tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(contract.RESOLVER)


def evaluator_component(config: PipelineConfig, examples, model, baseline_model) -> Any:
    """The Evaluator of `model` on the `test` split of `examples` against `baseline_model`, blessing per
    `eval_config`."""
    evaluator = tfx.components.Evaluator(
        examples=examples, model=model, baseline_model=baseline_model,
        eval_config=eval_config(config), example_splits=[TEST],
    ).with_id(contract.EVALUATOR)
    if config.beam.evaluator_args():
        evaluator.with_beam_pipeline_args(config.beam.evaluator_args())
    return evaluator


def create_pipeline(config: PipelineConfig,
                    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
                    ) -> tfx.dsl.Pipeline:
    """The TFX pipeline of `config`, the same for every runner.

    Args:
      config: where data is read and outputs go, the Beam profile, blessing thresholds and the trainer settings.
      metadata_connection_config: the ML Metadata store of a local run (pipeline/config/metadata.py); None for
        Kubeflow and Vertex, which bring their own.

    Returns a `tfx.dsl.Pipeline` of nine nodes (ids in trainer/contract.py): `data_components` (ImportExampleGen,
    StatisticsGen, the schema, the gated ExampleValidator, Transform); the latest-blessed-model resolver; the
    Trainer (`run_fn` of trainer/run.py, in the pipeline or on Vertex AI, warm-started from that model); the
    Evaluator on `test` against it; the Pusher, which publishes a blessed model to `config.push_dir`.
    """
    data = data_components(config)
    examples, schema = data.example_gen.outputs["examples"], data.schema_gen.outputs["schema"]
    model_resolver = latest_blessed_model()
    trainer = trainer_component(  # in the pipeline, or a Vertex AI training job (config.vertex.training)
        config,
        run_fn=RUN_FN,
        examples=examples,
        transform_graph=data.transform.outputs["transform_graph"],
        schema=schema,
        base_model=model_resolver.outputs["model"],  # warm start (TrainerConfig.warm_start)
        train_args=tfx.proto.TrainArgs(splits=[TRAIN]),
        eval_args=tfx.proto.EvalArgs(splits=[EVAL]),
        custom_config={TRAINER_CONFIG_KEY: config.trainer.to_dict(), CLASS_NAMES_KEY: list(config.class_names),
                       MODEL_NAME_KEY: config.model_name,
                       # Epoch checkpoints survive a killed run here; the next run resumes from them.
                       BACKUP_DIR_KEY: f"{config.pipeline_root}/{contract.TRAINER}/backup"},
    ).with_id(contract.TRAINER)
    # The Trainer does not run on data that failed validation either.
    trainer.add_upstream_node(data.example_validator)
    evaluator = evaluator_component(config, examples, trainer.outputs["model"], model_resolver.outputs["model"])
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.push_dir)),
        custom_executor_spec=executor_spec.ExecutorClassSpec(AtomicPusherExecutor),
    ).with_id(contract.PUSHER)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[*data, trainer, model_resolver, evaluator, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        # a copy: TFX declares list[str | Placeholder], and a list[str] is not one to the checker (lists are invariant)
        beam_pipeline_args=[*config.beam_pipeline_args],
    )
