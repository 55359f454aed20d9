"""Beam's portable runner, the path Flink and Spark are driven through, against the DirectRunner.

The `flink` profile with `beam_job_endpoint=embed` and `beam_environment_type=LOOPBACK` runs the data-heavy
components (ImportExampleGen, StatisticsGen, SchemaGen, ExampleValidator, Transform, Evaluator) through
`PortableRunner`: each Beam pipeline becomes a Runner API proto sent over the Job API to an in-process job server,
and the SDK worker (in this process) runs the DoFns over the Fn API, so everything is pickled and every transform
is translated as on a cluster. The outputs must equal those of the shared DirectRunner run (tests/conftest.py):
the Evaluator scores that run's trained model, so no second training is needed.

What only a live cluster shows (docs/engines.md): the Flink/Spark job server jar and its Beam version, DOCKER SDK
workers started from the pipeline image, distributed file access to the data and the pipeline root.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import TinyRun
from trainer.contract import SPLITS

pytestmark = pytest.mark.slow

PORTABLE = ["beam_profile=flink", "beam_job_endpoint=embed", "beam_environment_type=LOOPBACK"]


@dataclasses.dataclass(frozen=True)
class Outputs:
    """The artifact folders one run wrote, by TFX type name."""

    examples: str
    statistics: str
    transform_graph: str
    evaluation: str
    blessed: bool


def _outputs(config, run_id=None) -> Outputs:
    from inspection import summary

    run = summary.collect(config, run_id)
    produced = {t: a[0] for step in run.steps for t, a in step.outputs.items()}
    return Outputs(examples=produced["Examples"].uri, statistics=produced["ExampleStatistics"].uri,
                   transform_graph=produced["TransformGraph"].uri, evaluation=produced["ModelEvaluation"].uri,
                   blessed=run.blessed)


@pytest.fixture(scope="module")
def direct(tiny_run: TinyRun):
    return direct_run(tiny_run)


@pytest.fixture(scope="module")
def portable(direct, tmp_path_factory) -> Outputs:
    return portable_run(direct, tmp_path_factory.mktemp("portable"))


def direct_run(tiny_run: TinyRun):
    """(config, outputs, trained model folder) of the shared DirectRunner run."""
    from pipeline import config as config_lib
    from inspection import summary

    config = config_lib.load(str(tiny_run.output))
    assert config.beam.profile == "direct"
    run = summary.collect(config, tiny_run.run_id)
    model = next(s for s in run.steps if s.component == "Trainer").outputs["Model"][0].uri
    return config, _outputs(config, tiny_run.run_id), model


def portable_run(direct, output: Path) -> Outputs:
    """The same data through the flink profile's Beam args, in a pipeline root of its own under `output`."""
    from tfx import v1 as tfx
    from tfx import version as tfx_version

    from pipeline import config as config_lib
    from pipeline.config import metadata
    from pipeline import pipeline as pipeline_lib

    direct_config, _, model_uri = direct
    config = config_lib.apply_overrides(
        dataclasses.replace(direct_config, output_dir=str(output)),
        config_lib.parse_overrides(PORTABLE))
    assert config.beam_pipeline_args == ["--runner=PortableRunner", "--job_endpoint=embed",
                                         "--environment_type=LOOPBACK"]
    data = pipeline_lib.data_components(config)
    # The DirectRunner run's trained model, so that the two Evaluators score the same weights. Without a
    # tfx_version the Evaluator would take it for a pre-0.26 artifact and look in <uri>/serving_model_dir.
    model = tfx.dsl.Importer(source_uri=model_uri, artifact_type=tfx.types.standard_artifacts.Model,
                             custom_properties={"tfx_version": tfx_version.__version__}
                             ).with_id("direct_runner_model")
    resolver = pipeline_lib.latest_blessed_model()
    evaluator = pipeline_lib.evaluator_component(config, data.example_gen.outputs["examples"],
                                                 model.outputs["result"], resolver.outputs["model"])
    config.beam.check_job_server()  # what `tokenlearner run` does first; `embed` needs no server
    os.makedirs(config.pipeline_root, exist_ok=True)  # as local_runner.run: MLMD's SQLite file goes in there
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name, pipeline_root=config.pipeline_root,
        components=[*data, model, resolver, evaluator], enable_cache=False,
        metadata_connection_config=metadata.connection_config(config.metadata, config.metadata_path),
        beam_pipeline_args=config.beam_pipeline_args))
    return _outputs(config)


def _records(examples_uri: str, split: str) -> list[bytes]:
    files = sorted(str(p) for p in Path(examples_uri, f"Split-{split}").glob("*.gz"))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def test_examples_are_the_same_records(direct, portable):
    _, ours, _ = direct
    counts = {}
    for split in SPLITS:
        records = counts[split] = _records(ours.examples, split)
        assert sorted(_records(portable.examples, split)) == sorted(records), split
    assert {split: len(records) for split, records in counts.items()} == {"train": 270, "eval": 30, "test": 300}


def _statistics(uri: str, split: str) -> dict:
    """Feature statistics of one split as a dict, features in path order (the order Beam's bundles gave is
    not part of the result)."""
    from google.protobuf import json_format
    from tensorflow_metadata.proto.v0 import statistics_pb2

    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.ParseFromString(Path(uri, f"Split-{split}", "FeatureStats.pb").read_bytes())
    (dataset,) = stats.datasets
    features = sorted(dataset.features, key=lambda f: f.path.SerializeToString())
    del dataset.features[:]
    dataset.features.extend(features)
    return json_format.MessageToDict(dataset)


def test_statistics_are_equal_up_to_order(direct, portable):
    _, ours, _ = direct
    for split in SPLITS:
        assert _statistics(portable.statistics, split) == _statistics(ours.statistics, split), split


def test_transformed_examples_are_equal(direct, portable):
    import tensorflow_transform as tft

    _, ours, _ = direct
    records = tf.constant(_records(ours.examples, "test"))
    transformed = []
    for uri in (ours.transform_graph, portable.transform_graph):
        output = tft.TFTransformOutput(uri)
        raw = tf.io.parse_example(records, output.raw_feature_spec())
        transformed.append({k: v.numpy() for k, v in output.transform_raw_features(raw).items()})
    assert set(transformed[0]) == {"image_xf", "label_xf"}
    assert transformed[0]["image_xf"].shape == (300, 32, 32, 3)
    # The per-channel mean/std analyzers sum float32 partial results in the order the runner's bundles give
    # them, which differs between the DirectRunner and the portable runner: the statistics may differ in the last
    # bit (measured: 2.4e-07 absolute, 1.2e-07 relative, i.e. one float32 ulp), nothing more. A pixel equal to the
    # mean normalizes to ~0, where that ulp of the mean is all there is: hence an absolute tolerance as well.
    for key in transformed[0]:
        np.testing.assert_allclose(transformed[1][key], transformed[0][key], rtol=1e-6, atol=1e-6, err_msg=key)


def _metrics(uri: str) -> dict:
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format

    out = {}
    for per_slice in tfma.load_metrics(uri):
        key = json_format.MessageToJson(per_slice.slice_key, sort_keys=True)
        out[key] = {json_format.MessageToJson(m.key, sort_keys=True): json_format.MessageToDict(m.value)
                    for m in per_slice.metric_keys_and_values}
    return out


def test_evaluation_metrics_are_equal(direct, portable):
    _, ours, _ = direct
    metrics, theirs = _metrics(ours.evaluation), _metrics(portable.evaluation)
    assert len(metrics) == 11  # overall and one slice per label
    assert {k: set(v) for k, v in theirs.items()} == {k: set(v) for k, v in metrics.items()}
    for slice_key, values in metrics.items():
        for name, value in values.items():
            if "cross" in name:  # a float32 sum over bundles, in each runner's bundle order: the last bit may differ
                assert theirs[slice_key][name]["doubleValue"] == pytest.approx(value["doubleValue"], rel=1e-6)
            else:  # counts and their ratios, plots' matrices: exactly equal
                assert theirs[slice_key][name] == value, (slice_key, name)
    assert portable.blessed == ours.blessed
