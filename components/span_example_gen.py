"""ImportExampleGen over the spans of a dataset, reading the training window and recording which spans it read.

`tokenlearner data --append` adds span N beside the earlier ones (<split>/span-NNNN-*.tfrecord.gz, named by
trainer/contract.py), so ImportExampleGen's `<split>/*.tfrecord.gz` patterns see every span. TFX's own `{SPAN}`
patterns make one Examples artifact per span, and gathering several of them back (SpanRangeStrategy, a rolling
range) takes a Resolver that Kubeflow Pipelines v2 and Vertex AI do not compile (they support only the latest-
artifact and latest-blessed-model resolvers). So the window is chosen here, inside the one ExampleGen every engine
runs: the newest `train_spans` spans (0 = all) of the shards the patterns match. The TFX driver still fingerprints
every matching file, so appending a span invalidates the cache.

The spans read are written on the Examples artifact, as its `spans` custom property ("0,1,2", in ML Metadata: the
lineage of every model leads to it) and as `spans.json` in its folder, which the Trainer reads.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

import apache_beam as beam
from tfx import types
from tfx.components.example_gen import driver, utils
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import proto_utils

from trainer.contract import SPANS_FILE, SPANS_PROPERTY, span_of_shard

TRAIN_SPANS_KEY = "train_spans"  # the execution parameter (PipelineConfig.train_spans)


def _input_patterns(exec_properties: dict[str, Any]) -> list[str]:
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    return [os.path.join(base, split.pattern) for split in input_config.splits]


def window(spans: set[int], train_spans: Optional[int]) -> list[int]:
    """The newest `train_spans` of `spans` (all for 0 or None), ascending."""
    ordered = sorted(spans)
    return ordered[-train_spans:] if train_spans else ordered


def window_of(exec_properties: dict[str, Any]) -> list[int]:
    """The spans this execution reads: the newest `train_spans` of those any split's pattern matches."""
    found = {span_of_shard(os.fsdecode(path))  # glob is typed str | bytes
             for pattern in _input_patterns(exec_properties) for path in fileio.glob(pattern)}
    return window(found, exec_properties.get(TRAIN_SPANS_KEY))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _ReadSpanWindow(pipeline: beam.Pipeline, exec_properties: dict[str, Any],  # pylint: disable=invalid-name
                    split_pattern: str) -> beam.pvalue.PCollection:
    """The serialized tf.Examples of one split, from the shards of the window's spans only."""
    spans = set(window_of(exec_properties))
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    files = sorted(path for path in map(os.fsdecode, fileio.glob(pattern)) if span_of_shard(path) in spans)
    if not files:
        raise ValueError(f"{pattern}: no TFRecord shard of spans {sorted(spans)} (run `tokenlearner data`)")
    return (pipeline
            | "Shards" >> beam.Create(files)
            | "Read" >> beam.io.ReadAllFromTFRecord(compression_type=beam.io.filesystem.CompressionTypes.AUTO))


class SpanWindowExecutor(import_executor.Executor):
    """ImportExampleGen's executor reading only the window's spans, and recording them on the Examples artifact."""

    # TFX declares -> beam.PTransform, yet calls the result with (exec_properties, split_pattern) to get one
    # (base_example_gen_executor), as its own ImportExampleGen does: a factory, typed here as what it is.
    def GetInputSourceToExamplePTransform(self) -> Callable[..., beam.PTransform]:  # type: ignore[override]
        return _ReadSpanWindow

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        spans = window_of(exec_properties)
        super().Do(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        examples.set_string_custom_property(SPANS_PROPERTY, ",".join(map(str, spans)))
        with fileio.open(os.path.join(examples.uri, SPANS_FILE), "w") as f:
            f.write(json.dumps({"spans": spans}) + "\n")


class SpanImportExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    """The stock ExampleGen spec plus the training window."""

    PARAMETERS = {**standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
                  TRAIN_SPANS_KEY: ExecutionParameter(type=int, optional=True)}


class SpanImportExampleGen(FileBasedExampleGen):
    """`ImportExampleGen(input_base, input_config)` of GZIP TFRecord tf.Examples reading the newest `train_spans`
    spans (0 = all). A FileBasedExampleGen, so TFX's file-based driver (fingerprint, caching) runs before it on
    every engine."""

    SPEC_CLASS = SpanImportExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(SpanWindowExecutor)
    DRIVER_CLASS = driver.FileBasedDriver

    def __init__(self, input_base: str, input_config: example_gen_pb2.Input, train_spans: int = 0):
        # FileBasedExampleGen.__init__ builds the stock spec; this builds ours with the same fields.
        base_beam_component.BaseBeamComponent.__init__(self, spec=SpanImportExampleGenSpec(
            input_base=input_base, input_config=input_config,
            output_config=utils.make_default_output_config(input_config),
            custom_config=None, range_config=None,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            train_spans=train_spans,
            examples=types.Channel(type=standard_artifacts.Examples)))
