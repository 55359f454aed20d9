"""Beam profiles: where the data-heavy components (ExampleGen, StatisticsGen, Transform, Evaluator) run.

A profile is a typed, frozen `BeamConfig`; `pipeline_args` turns it into the exact `beam_pipeline_args` list the
pipeline passes to every Beam-based component; the list is plain data. The one place that talks to a cluster is
`check_job_server`, which a local run calls before it starts: a portable profile's job server must answer.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import typing

from pipeline.config.errors import ConfigError

PROFILES = ("direct", "dataflow", "flink", "spark")
# How a portable job server starts the Python SDK workers (Beam's --environment_type).
ENVIRONMENT_TYPES = ("DOCKER", "EXTERNAL", "PROCESS", "LOOPBACK")
AUTOSCALING = ("THROUGHPUT_BASED", "NONE")
# Beam's --job_endpoint value that runs the job server inside this process (no cluster; tests, debugging).
EMBEDDED_JOB_SERVER = "embed"
JOB_SERVER_TIMEOUT_S = 10.0  # Beam itself waits 60 s (--job_server_timeout) and then says only FutureTimeoutError


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    """Which Beam runner executes the data-heavy components, and its settings. Fields are flat scalars so that
    `--set beam_profile=dataflow --set beam_temp_location=gs://b/tmp` reaches them."""

    profile: str = "direct"  # direct | dataflow | flink | spark
    # dataflow
    project: str = ""  # GCP project that runs the Dataflow jobs
    region: str = ""  # Dataflow region, e.g. us-central1
    temp_location: str = ""  # gs:// folder for temporary and staged files
    machine_type: str = ""  # worker machine type, e.g. n1-standard-4; "" = Dataflow's default
    autoscaling: str = "THROUGHPUT_BASED"  # THROUGHPUT_BASED or NONE (fixed num_workers)
    num_workers: int = 0  # initial workers; 0 = Dataflow's default
    max_workers: int = 0  # autoscaling ceiling; 0 = Dataflow's default
    # Dataflow workers need this project's code: by default they run the pipeline image (sdk_container_image);
    # a path to a setup.py instead (the checkout's own, setup.py at its root) makes Beam build and stage an sdist of the
    # project.
    setup_file: str = ""
    # flink / spark (portable runner)
    job_endpoint: str = ""  # host:port of the Flink or Spark Beam job server
    environment_type: str = "DOCKER"  # how SDK workers start: DOCKER (the image), EXTERNAL, PROCESS, LOOPBACK
    environment_config: str = ""  # DOCKER: image (default: the pipeline image); EXTERNAL: worker pool host:port
    parallelism: int = 0  # flink: default parallelism of the job; 0 = the cluster's default

    def __post_init__(self) -> None:
        # Only what can be checked without knowing the image; pipeline_args checks the rest.
        if self.profile not in PROFILES:
            raise ConfigError(f"beam_profile: unknown {self.profile!r}; expected one of {list(PROFILES)}")
        if self.environment_type not in ENVIRONMENT_TYPES:
            raise ConfigError(f"beam_environment_type: unknown {self.environment_type!r}; "
                             f"expected one of {list(ENVIRONMENT_TYPES)}")
        if self.autoscaling not in AUTOSCALING:
            raise ConfigError(f"beam_autoscaling: unknown {self.autoscaling!r}; expected one of {list(AUTOSCALING)}")
        for name in ("num_workers", "max_workers", "parallelism"):
            if getattr(self, name) < 0:
                raise ConfigError(f"beam_{name}: expected >= 0, got {getattr(self, name)}")
        if self.setup_file and os.path.basename(self.setup_file) != "setup.py":
            raise ConfigError(f"beam_setup_file: Beam expects a path to a file named setup.py, got {self.setup_file!r}")
        if self.setup_file and not os.path.dirname(self.setup_file):  # Beam builds the sdist in that folder (chdir)
            raise ConfigError(f"beam_setup_file: expected a path with its folder (/path/to/checkout/setup.py or "
                              f"./setup.py), got {self.setup_file!r}")

    def pipeline_args(self, direct_workers: int, image: str = "") -> list[str]:
        """The exact `beam_pipeline_args` of this profile. `direct_workers`: DirectRunner processes (0 = one per
        CPU); `image`: the pipeline's container image (Dataflow SDK container, portable DOCKER environment)."""
        if self.profile == "direct":
            if direct_workers == 1:  # one worker: stay in this process (no worker start-up; small runs, tests)
                return ["--direct_running_mode=in_memory"]
            return ["--direct_running_mode=multi_processing", f"--direct_num_workers={direct_workers}"]
        if self.profile == "dataflow":
            return self._dataflow_args(image)
        return self._portable_args(image)

    def evaluator_args(self) -> list[str]:
        """What the Evaluator adds to `pipeline_args`. DirectRunner: one in-process worker. The Evaluator is model
        inference, which TensorFlow already spreads over every core of one process; each extra worker process
        imports TensorFlow and loads the candidate and the baseline SavedModels again, and the workers' thread
        pools then contend for the same cores. Distributed runners keep their workers."""
        if self.profile == "direct":
            return ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
        return []

    def _require(self, **values: str) -> None:
        for name, value in values.items():
            if not value:
                raise ConfigError(f"{name}: required by beam_profile={self.profile}")

    def _dataflow_args(self, image: str) -> list[str]:
        self._require(beam_project=self.project, beam_region=self.region, beam_temp_location=self.temp_location)
        if not self.temp_location.startswith("gs://"):
            raise ConfigError(f"beam_temp_location: Dataflow needs a gs:// folder, got {self.temp_location!r}")
        if not (image or self.setup_file):
            raise ConfigError("image: required by beam_profile=dataflow (workers run it as sdk_container_image); "
                             "or set beam_setup_file to stage the project as an sdist")
        args = ["--runner=DataflowRunner", f"--project={self.project}", f"--region={self.region}",
                f"--temp_location={self.temp_location}", f"--autoscaling_algorithm={self.autoscaling}"]
        if self.num_workers:
            args.append(f"--num_workers={self.num_workers}")
        if self.max_workers:
            args.append(f"--max_num_workers={self.max_workers}")
        if self.machine_type:
            args.append(f"--machine_type={self.machine_type}")
        # The image already holds the project and the locked dependencies: nothing to stage, fast worker start.
        args.append(f"--setup_file={self.setup_file}" if self.setup_file else f"--sdk_container_image={image}")
        return args

    def _portable_args(self, image: str) -> list[str]:
        self._require(beam_job_endpoint=self.job_endpoint)
        environment_config = self.environment_config
        if self.environment_type == "DOCKER":
            environment_config = environment_config or image
            if not environment_config:
                raise ConfigError(f"image: required by beam_profile={self.profile} with DOCKER workers "
                                 "(or set beam_environment_config to an SDK worker image)")
        elif self.environment_type == "EXTERNAL":
            self._require(beam_environment_config=environment_config)
        args = ["--runner=PortableRunner", f"--job_endpoint={self.job_endpoint}",
                f"--environment_type={self.environment_type}"]
        if environment_config:
            args.append(f"--environment_config={environment_config}")
        if self.profile == "flink" and self.parallelism:
            args.append(f"--parallelism={self.parallelism}")
        if self.environment_type == "DOCKER" and environment_config == image:
            # Not read by the portable runner; it tells TFX that the workers' image already holds TFX and this
            # project, so TFX does not build a TFX sdist for the workers to pip-install over the locked one.
            args.append(f"--sdk_container_image={image}")
        return args

    def check_job_server(self, timeout_s: float = JOB_SERVER_TIMEOUT_S) -> None:
        """A portable profile's job server must answer before any work starts (the condition Beam's
        PortableRunner waits for: a ready gRPC channel), else one ConfigError naming the endpoint and the fix.
        Other profiles, and the in-process `embed` job server, need nothing."""
        if self.profile not in ("flink", "spark") or self.job_endpoint == EMBEDDED_JOB_SERVER:
            return
        host, _, port = self.job_endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"beam_job_endpoint: expected host:port (or {EMBEDDED_JOB_SERVER!r}), "
                              f"got {self.job_endpoint!r}")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                pass
        except socket.gaierror:
            self._no_job_server(f"cannot resolve host {host!r}")
        except socket.timeout:
            self._no_job_server(f"no answer in {timeout_s:g} s")
        except OSError as e:
            self._no_job_server((e.strerror or str(e)).lower())
        import grpc  # Beam's own dependency; only needed when something listens

        channel = grpc.insecure_channel(self.job_endpoint)
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            self._no_job_server(f"something listens there but no gRPC server answered in {timeout_s:g} s")
        finally:
            channel.close()

    def _no_job_server(self, reason: str) -> typing.NoReturn:
        raise ConfigError(f"beam_job_endpoint {self.job_endpoint} ({self.profile} profile): no Beam job server "
                          f"answers ({reason}); start the {self.profile.capitalize()} job server or fix "
                          f"--set beam_job_endpoint")
