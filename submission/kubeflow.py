"""Sends a compiled spec to a Kubeflow Pipelines API server with kfp's own `kfp.Client`: one run, or a recurring run
on a cron (`tokenlearner submit --target kubeflow [--schedule CRON]`). The spec comes from
pipeline/kubeflow_runner.py.

A dry run goes through the same client code, which builds the same requests; `_offline_kfp_api` answers them here
instead of sending them, so they can be printed and checked without a server.

A real submission that fails is one `SubmitError` line (errors.py): a host that cannot be reached (connection
refused, no such host, no answer within CONNECT_TIMEOUT_S) or an HTTP error status from the server, naming the host
and the request. kfp's client retries its first request (healthz) 5 times 5 s apart on an HTTP error; here it is
asked once, so a 403 or 500 is reported at once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import urllib.parse
from typing import Any, Iterator, Optional

from pipeline.config import ConfigError, PipelineConfig
from pipeline.config.schedule import CronSchedule
from submission.errors import SubmitError, first_line

log = logging.getLogger(__name__)

# Seconds to wait for the API server to accept a connection, and then for each answer (the spec upload is the
# largest request: about 100 kB). kfp_server_api's own default is to wait without end.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0


# The id a dry run's stand-in server gives the experiment; a real server assigns its own.
DRY_RUN_EXPERIMENT_ID = "dry-run-experiment-id"


@dataclasses.dataclass(frozen=True)
class KubeflowTarget:
    """Where `submit` sends the pipeline: the KFP API endpoint, the user's namespace (multi-user Kubeflow; None = the
    client's default) and the experiment that groups the runs (created if missing)."""

    host: str
    experiment: str
    namespace: Optional[str] = None


def check_spec_path(spec_path: str) -> None:
    """kfp.Client uploads the PipelineSpec as YAML (`pipeline_package_path`): another suffix (Vertex's .json) is a
    named error. The CLI calls it before compiling, so a wrong --out costs nothing."""
    if not spec_path.endswith((".yaml", ".yml")):
        raise ConfigError(f"--out: Kubeflow Pipelines takes the PipelineSpec YAML (e.g. pipeline.yaml), got "
                          f"{spec_path!r}")


def submit(config: PipelineConfig, spec_path: str, target: KubeflowTarget, cron: Optional[CronSchedule] = None,
           dry_run: bool = False) -> list[dict[str, Any]]:
    """Sends the compiled spec (`spec_path`, a .yaml PipelineSpec) to Kubeflow Pipelines with `kfp.Client`: a run now,
    or with `cron` a recurring run (`create_recurring_run`: at most one run at a time, no catch-up of the times a
    paused schedule missed). Returns the HTTP requests the client made, in order, as {method, url, body}.

    With `dry_run` the same client code builds the same requests, but `_offline_kfp_api` answers them here instead of
    sending them: healthz says single-user, the experiment is not found and gets DRY_RUN_EXPERIMENT_ID.

    A server that cannot be reached, or answers with an HTTP error, is a SubmitError naming the host, the request and
    the status or reason."""
    check_spec_path(spec_path)
    cron_expression = cron.for_kubeflow() if cron is not None else None
    import kfp_server_api
    import urllib3

    with _offline_kfp_api(answer=dry_run) as sent, contextlib.redirect_stdout(io.StringIO()) as printed, \
            _quiet_retries():
        try:
            client = _client_class()(host=target.host, namespace=target.namespace or "kubeflow")
            experiment = client.create_experiment(target.experiment, namespace=target.namespace)
            common = dict(experiment_id=experiment.experiment_id, job_name=config.pipeline_name,
                          pipeline_package_path=spec_path, pipeline_root=config.pipeline_root,
                          enable_caching=config.enable_cache)
            if cron_expression is None:
                client.run_pipeline(**common, params={})
            else:
                client.create_recurring_run(**common, cron_expression=cron_expression, max_concurrency=1,
                                            no_catchup=True, enabled=True)
        except kfp_server_api.ApiException as e:  # the server answered, with an error status
            status = f"HTTP {e.status} {e.reason or ''}".strip() if e.status else first_line(e)
            raise SubmitError(f"Kubeflow Pipelines at {target.host}: {_last_request(sent)} answered {status}"
                              f"{_server_message(e.body)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:  # nothing answered: refused, no such host, timeout
            raise SubmitError(f"Kubeflow Pipelines at {target.host}: unreachable ({_network_reason(e)}); is the "
                              f"API server up and --host right (e.g. after `kubectl port-forward -n kubeflow "
                              f"svc/ml-pipeline 8080:8888`, http://localhost:8080)?") from None
    for line in printed.getvalue().splitlines():  # the client prints its UI links; stdout is our JSON
        log.info("kfp: %s", line)
    return sent


@contextlib.contextmanager
def _quiet_retries() -> Iterator[None]:
    """urllib3 logs a warning for each retry of a refused connection (3 before the error); the error is our one line,
    so they show only with -v (our loggers at DEBUG). Its pool's logger: kfp_server_api's Configuration resets the
    level of "urllib3" itself."""
    logger = logging.getLogger("urllib3.connectionpool")
    level = logger.level
    if not log.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _client_class() -> type:
    """kfp.Client, asking for healthz once: its own get_kfp_healthz retries an HTTP error 5 times, 5 s apart (a
    403 or 500 from a server that is up does not change in 25 s)."""
    import kfp

    class OneHealthCheck(kfp.Client):
        def get_kfp_healthz(self, sleep_duration: int = 5):
            return self._healthz_api.get_healthz()

    return OneHealthCheck


def _last_request(sent: list[dict[str, Any]]) -> str:
    if not sent:
        return "the server"
    request = sent[-1]
    return f"{request['method']} {urllib.parse.urlsplit(request['url']).path}"


def _server_message(body: Any) -> str:
    """': <the server's message>' from a KFP error body (JSON with "message" or "error"), or nothing."""
    try:
        parsed = json.loads(body) if isinstance(body, (str, bytes)) and body else {}
    except ValueError:
        return ""
    message = parsed.get("message") or parsed.get("error") if isinstance(parsed, dict) else None
    return f": {first_line(Exception(message), 200)}" if isinstance(message, str) and message.strip() else ""


def _network_reason(error: BaseException) -> str:
    """What urllib3 says failed, without its wrapping: 'Connection refused', 'Name or service not known', ..."""
    reason = getattr(error, "reason", None) or error
    text = first_line(reason if isinstance(reason, BaseException) else Exception(str(reason)))
    return text.rsplit(": ", 1)[-1] if ": " in text else text


class _Answer:
    """What kfp_server_api's ApiClient reads from a REST response."""

    def __init__(self, body: dict[str, Any]):
        self.status, self.reason, self.data = 200, "OK", json.dumps(body).encode()

    def getheader(self, name: str, default: Any = None) -> Any:
        return "application/json" if name.lower() == "content-type" else default

    def getheaders(self) -> dict[str, str]:
        return {"content-type": "application/json"}


@contextlib.contextmanager
def _offline_kfp_api(answer: bool) -> Iterator[list[dict[str, Any]]]:
    """Keeps every request kfp.Client makes in the block (kfp_server_api's `RESTClientObject.request`, where the
    generated API classes hand over method, URL and JSON body). With `answer` they are answered here and nothing is
    sent; else they go on to the server."""
    from kfp_server_api import rest

    sent: list[dict[str, Any]] = []
    original = rest.RESTClientObject.request

    def request(self, method, url, query_params=None, headers=None, body=None, post_params=None, **kwargs):
        query = dict(query_params or ())
        sent.append({"method": method, "url": url + (f"?{urllib.parse.urlencode(query)}" if query else ""),
                     "body": body})
        if not answer:
            if kwargs.get("_request_timeout") is None:
                kwargs["_request_timeout"] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
            return original(self, method, url, query_params=query_params, headers=headers, body=body,
                            post_params=post_params, **kwargs)
        path = urllib.parse.urlsplit(url).path
        if path.endswith("/healthz"):
            return _Answer({"multi_user": False})
        if path.endswith("/experiments") and method == "POST":
            return _Answer({**body, "experiment_id": DRY_RUN_EXPERIMENT_ID})
        return _Answer(body if method == "POST" else {})  # a lookup finds nothing; a creation echoes its body

    rest.RESTClientObject.request = request
    try:
        yield sent
    finally:
        rest.RESTClientObject.request = original
