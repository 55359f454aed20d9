"""Clients of the orchestrators: send a spec compiled by pipeline/kubeflow_runner.py or pipeline/vertex_runner.py.

- kubeflow.py: a run or a recurring run on a Kubeflow Pipelines API server (`kfp.Client`);
- vertex.py: a PipelineJob or a pipeline schedule on Vertex AI Pipelines (`aiplatform`);
- errors.py: `SubmitError`, what either raises when the server cannot be reached, the credentials are missing or
  the server answers with an HTTP error: one line naming the host or project and the status.

Each can build its exact requests offline (`--dry-run`) with the real client classes.
"""
