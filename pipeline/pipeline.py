"""The pipeline graph, shared by every runner (local Beam, Kubeflow Pipelines v2, Vertex AI).

Node ids, split names, the Trainer's entry point and custom_config keys come from trainer/contract.py.

ImportExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform -> Trainer
-> Resolver(latest blessed model) -> Evaluator -> Pusher
"""
from __future__ import annotations

from typing import Optional

import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from tfx.dsl.components.base import executor_spec

from components.pusher import AtomicPusherExecutor
from components.schema_gen import PackagedImportSchemaGen
from components.trainer_component import trainer_component
from components.validator import GatedExampleValidator
from pipeline.config import PipelineConfig
from trainer import contract, features
from trainer.contract import (BACKUP_DIR_KEY, CLASS_NAMES_KEY, EVAL, MODEL_NAME_KEY, PREPROCESSING_FN, RUN_FN, SPLITS,
                              TEST, TRAIN, TRAINER_CONFIG_KEY)


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Accuracy and top-5 on the test split, overall and per class; blessing = above the floor and no regression
    beyond the tolerance against the latest blessed model."""
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.accuracy_floor}),
        change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                                     absolute={"value": -config.regression_tolerance}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_tf_example", label_key=features.LABEL_KEY,
                                    prediction_key="probabilities")],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.LABEL_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            # The gate is on the overall slice; per-class accuracies are reported, not gated.
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy", per_slice_thresholds=[
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=accuracy_threshold)]),
            tfma.MetricConfig(class_name="SparseTopKCategoricalAccuracy", config='{"k": 5}'),
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        ])])


def create_pipeline(config: PipelineConfig,
                    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
                    ) -> tfx.dsl.Pipeline:
    """The TFX pipeline of `config`, the same for every runner.

    Args:
      config: where data is read and outputs go, the Beam profile, blessing thresholds and the trainer settings.
      metadata_connection_config: the ML Metadata store of a local run (pipeline/config/metadata.py); None for
        Kubeflow and Vertex, which bring their own.

    Returns a `tfx.dsl.Pipeline` of nine nodes (ids in trainer/contract.py): ImportExampleGen over the `train`,
    `eval`, `test` splits written by `tokenlearner data`; StatisticsGen and the schema (curated or inferred); the
    gated ExampleValidator; Transform (analyzed on `train`); the Trainer (`run_fn` of trainer/run.py, in the
    pipeline or on Vertex AI); the latest-blessed-model resolver; the Evaluator on `test` (blessing per
    `eval_config`); the Pusher, which publishes a blessed model to `config.push_dir`.
    """
    example_gen = tfx.components.ImportExampleGen(
        input_base=config.data_root,
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name=name, pattern=f"{name}/*.tfrecord.gz") for name in SPLITS],
        )).with_id(contract.EXAMPLE_GEN)
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
    # Fails the run on anomalies (and on label drift against the train split); the Trainer waits for it.
    example_validator = GatedExampleValidator(statistics=statistics_gen.outputs["statistics"],
                                              schema=schema_gen.outputs["schema"])
    example_validator = example_validator.with_id(contract.EXAMPLE_VALIDATOR)
    # Analyze on train only; not materialized: the Trainer and every serving signature apply the same graph.
    # No pre/post-transform statistics: StatisticsGen has them, and 3,072 float features per image are costly.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, materialize=False, disable_statistics=True,
        splits_config=tfx.proto.SplitsConfig(analyze=[TRAIN]))
    trainer = trainer_component(  # in the pipeline, or a Vertex AI training job (config.vertex.training)
        config,
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=[TRAIN]),
        eval_args=tfx.proto.EvalArgs(splits=[EVAL]),
        custom_config={TRAINER_CONFIG_KEY: config.trainer.to_dict(), CLASS_NAMES_KEY: list(config.class_names),
                       MODEL_NAME_KEY: config.model_name,
                       # Epoch checkpoints survive a killed run here; the next run resumes from them.
                       BACKUP_DIR_KEY: f"{config.pipeline_root}/{contract.TRAINER}/backup"},
    ).with_id(contract.TRAINER)
    # Neither Transform nor Trainer runs on data that failed validation.
    transform.add_upstream_node(example_validator)
    trainer.add_upstream_node(example_validator)
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(contract.RESOLVER)
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"], eval_config=eval_config(config), example_splits=[TEST],
    ).with_id(contract.EVALUATOR)
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.push_dir)),
        custom_executor_spec=executor_spec.ExecutorClassSpec(AtomicPusherExecutor),
    ).with_id(contract.PUSHER)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, transform, trainer,
                    model_resolver, evaluator, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=config.beam_pipeline_args,
    )
