"""Submits a compiled spec to Vertex AI Pipelines as an `aiplatform.PipelineJob`, or creates a pipeline schedule that
submits it on a cron (`tokenlearner submit [--schedule CRON]`). The spec and the Vertex settings' checks come from
pipeline/vertex_runner.py.

`dry_run` builds the very PipelineJob object that would be sent, with anonymous credentials (so nothing, not even
a credentials lookup, touches the network), and returns what it would send instead of sending it. A scheduled dry run
goes through the SDK's own `PipelineJob.create_schedule` and stops at the gRPC call: `_recorded_schedule_requests`
answers it here and keeps the `CreateScheduleRequest` it was given.

A real submission that fails is one `SubmitError` line (errors.py) naming the project and region: no Google Cloud
credentials, credentials that are refused, or an HTTP error status from Vertex AI (403 without the rights, 404 for
an API not enabled, ...).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from pipeline import vertex_runner
from pipeline.config import PipelineConfig
from pipeline.config.schedule import CronSchedule
from submission.errors import SubmitError, first_line


@contextlib.contextmanager
def _one_line_failures(config: PipelineConfig) -> Iterator[None]:
    """Around what talks to Vertex AI: its failures as one SubmitError naming the project and region."""
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    where = f"Vertex AI (project {config.vertex.project}, region {config.vertex.region})"
    try:
        yield
    except auth_exceptions.DefaultCredentialsError as e:
        raise SubmitError(f"{where}: no Google Cloud credentials ({first_line(e, 160)}); run `gcloud auth "
                          f"application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service "
                          f"account key file") from None
    except auth_exceptions.GoogleAuthError as e:  # refused or expired credentials, the token server unreachable
        raise SubmitError(f"{where}: could not authenticate ({type(e).__name__}: {first_line(e, 200)})") from None
    except api_exceptions.GoogleAPICallError as e:  # Vertex answered with an error status
        status = f"HTTP {e.code}" if e.code else type(e).__name__
        raise SubmitError(f"{where}: {status} {first_line(Exception(e.message or e), 200)}") from None
    except api_exceptions.RetryError as e:  # no answer before the client's deadline
        raise SubmitError(f"{where}: unreachable ({first_line(e, 200)})") from None


def pipeline_job(config: PipelineConfig, spec_path: str, credentials: Any = None) -> Any:
    """The `aiplatform.PipelineJob` of the compiled spec, with this config's name, root, caching and labels."""
    from google.cloud import aiplatform

    return aiplatform.PipelineJob(
        display_name=config.pipeline_name, template_path=spec_path, pipeline_root=config.pipeline_root,
        parameter_values={}, enable_caching=config.enable_cache, labels=config.vertex.label_dict or None,
        project=config.vertex.project, location=config.vertex.region, credentials=credentials)


def _offline_credentials(dry_run: bool, credentials: Any) -> Any:
    if not dry_run:
        return credentials
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def submit(config: PipelineConfig, spec_path: str, dry_run: bool = False, credentials: Any = None) -> Any:
    """Creates the `aiplatform.PipelineJob` from the compiled spec and submits it unless `dry_run`."""
    vertex_runner.check(config)
    with _one_line_failures(config):
        job = pipeline_job(config, spec_path, _offline_credentials(dry_run, credentials))
        if not dry_run:
            job.submit(service_account=config.vertex.service_account or None)
    return job


def create_schedule(config: PipelineConfig, spec_path: str, cron: CronSchedule, dry_run: bool = False,
                    credentials: Any = None) -> tuple[Any, dict[str, Any]]:
    """A Vertex AI pipeline schedule that submits the compiled spec on `cron` (`PipelineJob.create_schedule`); returns
    the schedule and the `CreateScheduleRequest` (as a dict) that was sent, or with `dry_run` would have been.

    At most one scheduled run at a time, and none queued behind it: two runs of the same pipeline would race to push
    model versions; a run that is still going when the next is due makes Vertex skip that one. Both limits are set:
    `max_concurrent_run_count` only limits how many run *requests* start at once (aiplatform v1 Schedule's field
    doc), `max_concurrent_active_run_count` the runs not yet finished."""
    vertex_runner.check(config)
    with _one_line_failures(config), _recorded_schedule_requests(answer=dry_run) as sent:
        job = pipeline_job(config, spec_path, _offline_credentials(dry_run, credentials))
        schedule = job.create_schedule(cron=cron.for_vertex(), display_name=config.pipeline_name,
                                       max_concurrent_run_count=1, max_concurrent_active_run_count=1,
                                       allow_queueing=False,
                                       service_account=config.vertex.service_account or None)
    (request,) = sent
    return schedule, request


@contextlib.contextmanager
def _recorded_schedule_requests(answer: bool) -> Iterator[list[dict[str, Any]]]:
    """Keeps the `CreateScheduleRequest` of every `ScheduleServiceClient.create_schedule` call in the block (v1 and
    v1beta1 gapic clients: the SDK picks one), as the dict of its JSON form. With `answer`, the call is answered here
    with the schedule it asked for (named `<parent>/schedules/dry-run`) and nothing is sent; else it goes on."""
    from google.cloud import aiplatform_v1, aiplatform_v1beta1
    from google.protobuf import json_format

    sent: list[dict[str, Any]] = []
    originals = {}
    for module in (aiplatform_v1, aiplatform_v1beta1):
        client_class, request_class = module.ScheduleServiceClient, module.CreateScheduleRequest
        originals[client_class] = original = client_class.create_schedule

        def create_schedule(self, request=None, *, parent=None, schedule=None, _original=original,
                            _request_class=request_class, **kwargs):
            built = _request_class(request) if request is not None else _request_class(parent=parent,
                                                                                         schedule=schedule)
            sent.append(json_format.MessageToDict(type(built).pb(built)))
            if not answer:
                return _original(self, request=request, parent=parent, schedule=schedule, **kwargs)
            response = type(built.schedule)(built.schedule)
            response.name = f"{built.parent}/schedules/dry-run"
            return response

        client_class.create_schedule = create_schedule
    try:
        yield sent
    finally:
        for client_class, original in originals.items():
            client_class.create_schedule = original
