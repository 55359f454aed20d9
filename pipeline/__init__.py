"""CIFAR-10 TokenLearner pipeline: the TFX graph and its runners here, the rest in one subpackage per concern.

- pipeline.py: `create_pipeline(config)`, the graph every runner runs;
- local_runner.py, kubeflow_runner.py, vertex_runner.py: LocalDagRunner (Beam), Kubeflow Pipelines v2 compile,
  Vertex AI Pipelines compile (sending a compiled spec is the top-level submission/ package's);
- config/: the settings (`PipelineConfig` and its Beam, metadata and Vertex sections, each container's resources)
  and the curated schema;
- cli/: the `tokenlearner` command line, one module per group of subcommands, and its exit codes;
- inspection/: what a finished run recorded, read back from ML Metadata: run summary, HTML report, TensorBoard.

TF_USE_LEGACY_KERAS must be set before TensorFlow is first imported: TFT and TFMA only work with Keras 2.
"""
import os as _os

_os.environ["TF_USE_LEGACY_KERAS"] = "1"
