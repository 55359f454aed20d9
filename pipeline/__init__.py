"""CIFAR-10 TokenLearner pipeline: the TFX graph, its runners and its settings; nothing else.

- pipeline.py: `create_pipeline(config)`, the graph every runner runs;
- local_runner.py, kubeflow_runner.py, vertex_runner.py: LocalDagRunner (Beam), Kubeflow Pipelines v2 compile,
  Vertex AI Pipelines compile; container_limits.py: each container's limits in a compiled spec;
- config/: the settings (`PipelineConfig` and its Beam, metadata and Vertex sections, each container's resources)
  and the curated schema.

The rooms around it, each a top-level package: cli/ (the `tokenlearner` command line and its exit codes),
inspection/ (what a finished run recorded, read back from ML Metadata), submission/ (sending a compiled spec to
Kubeflow Pipelines or Vertex AI), components/ and trainer/ (the code the graph's components run).

Importing it sets TF_USE_LEGACY_KERAS first (trainer/__init__.py): TFT and TFMA only work with Keras 2.
"""
import trainer as _keras2  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
