"""Clients of the orchestrators: send a spec compiled by pipeline/kubeflow_runner.py or pipeline/vertex_runner.py.

- kubeflow.py: a run or a recurring run on a Kubeflow Pipelines API server (`kfp.Client`);
- vertex.py: a PipelineJob or a pipeline schedule on Vertex AI Pipelines (`aiplatform`).

Each can build its exact requests offline (`--dry-run`) with the real client classes.
"""
