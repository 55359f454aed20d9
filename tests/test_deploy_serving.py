"""deploy/serving/ without kubectl, Docker or TF Serving: Kubernetes manifests against the Kubernetes OpenAPI
schemas (kubernetes-validate, strict: unknown fields fail), TF Serving config files parsed as the protos the server
reads, and the paths that tie the Pusher's output, the compose file, the manifests and models.config together."""
from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from pipeline.config import PipelineConfig
from tests.helpers import REPO

DEPLOY = REPO / "deploy" / "serving"
K8S_VERSION = "1.30"  # the oldest Kubernetes these manifests are meant for (autoscaling/v2, policy/v1)
CONFIG_MOUNT = "/config"
MODELS_MOUNT = "/models"


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in args)


@pytest.fixture(scope="module")
def kustomization() -> dict:
    return yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def manifests(kustomization) -> dict[str, dict]:
    docs = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((DEPLOY / resource).read_text()):
            docs[doc["kind"]] = doc
    return docs


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _model_server_config(name: str) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse((DEPLOY / name).read_text(), model_server_config_pb2.ModelServerConfig())


def _proto_class(package: str, messages: dict[str, list[tuple[str, int, str, bool]]], name: str):
    """A message class built from field lists (name, number, type, repeated), for the TF Serving protos that the
    tensorflow-serving-api wheel does not ship. Types: 'bool', 'string', 'int64', or a message's full name."""
    file = descriptor_pb2.FileDescriptorProto(name=f"{package}.test.proto", package=package, syntax="proto3",
                                              dependency=["google/protobuf/wrappers.proto"])
    scalar = {"bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
              "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
              "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64}
    for message, fields in messages.items():
        proto = file.message_type.add(name=message)
        for field_name, number, kind, repeated in fields:
            field = proto.field.add(name=field_name, number=number, label=(
                descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED if repeated
                else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL))
            if kind in scalar:
                field.type = scalar[kind]
            else:
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                field.type_name = f".{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    # protobuf 3.20 (pinned by TFX): MessageFactory.GetPrototype; newer releases call it GetMessageClass.
    return message_factory.MessageFactory(pool).GetPrototype(pool.FindMessageTypeByName(f"{package}.{name}"))


# tensorflow_serving/servables/tensorflow/session_bundle_config.proto (BatchingParameters, fields 1-7) and
# tensorflow_serving/config/monitoring_config.proto.
BatchingParameters = _proto_class("tensorflow.serving", {"BatchingParameters": [
    ("max_batch_size", 1, "google.protobuf.Int64Value", False),
    ("batch_timeout_micros", 2, "google.protobuf.Int64Value", False),
    ("max_enqueued_batches", 3, "google.protobuf.Int64Value", False),
    ("num_batch_threads", 4, "google.protobuf.Int64Value", False),
    ("thread_pool_name", 5, "google.protobuf.StringValue", False),
    ("allowed_batch_sizes", 6, "int64", True),
    ("pad_variable_length_inputs", 7, "bool", False)]}, "BatchingParameters")
MonitoringConfig = _proto_class("tensorflow.serving", {
    "PrometheusConfig": [("enable", 1, "bool", False), ("path", 2, "string", False)],
    "MonitoringConfig": [("prometheus_config", 1, "tensorflow.serving.PrometheusConfig", False)]},
    "MonitoringConfig")


# --------------------------------------------------------------------------------------------------- Kubernetes

def test_manifests_validate_against_the_kubernetes_schemas(manifests):
    assert set(manifests) == {"PersistentVolumeClaim", "Deployment", "Service", "HorizontalPodAutoscaler",
                              "PodDisruptionBudget"}
    for kind, doc in manifests.items():
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION, kind


def test_the_validator_rejects_a_broken_manifest(manifests):
    """The schema check above can fail: a misspelled field and a wrong type are caught."""
    import copy

    broken = copy.deepcopy(manifests["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = 8501
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = copy.deepcopy(manifests["Service"])
    broken["spec"]["ports"][0]["port"] = "eighty-five-hundred"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_deployment_probes_security_and_resources(manifests, kustomization):
    deployment = manifests["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"][
        "labels"].items()
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}
    name = PipelineConfig(data_root="-").model_name
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] in ("http", 8501) and get["path"].startswith(f"/v1/models/{name}"), probe
    assert container["livenessProbe"]["httpGet"]["path"] == f"/v1/models/{name}"  # the model status endpoint
    assert container["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{name}/metadata"
    for key in ("cpu", "memory"):
        assert container["resources"]["requests"][key] and container["resources"]["limits"][key]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # Every path the server is told about is mounted; /tmp is writable despite the read-only root.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[MODELS_MOUNT]["readOnly"] and mounts[CONFIG_MOUNT]["readOnly"] and "/tmp" in mounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[CONFIG_MOUNT]["name"]]["configMap"]["name"] == \
        kustomization["configMapGenerator"][0]["name"]
    assert volumes[mounts[MODELS_MOUNT]["name"]]["persistentVolumeClaim"]["claimName"] == \
        manifests["PersistentVolumeClaim"]["metadata"]["name"]
    _check_server_flags(container["command"] + container["args"], kustomization["configMapGenerator"][0]["files"])


def _check_server_flags(command: list[str], config_files: list[str]) -> None:
    assert command[0] == "tensorflow_model_server"
    flags = _flags(command[1:])
    assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"
    assert flags["enable_batching"] == "true"
    for flag, file in (("model_config_file", "models.config"), ("batching_parameters_file",
                                                                "batching_parameters.txt"),
                       ("monitoring_config_file", "monitoring.config")):
        assert flags[flag] == f"{CONFIG_MOUNT}/{file}", flag
        assert file in config_files, file


def test_service_and_autoscaler_point_at_the_deployment(manifests):
    deployment, service, hpa = manifests["Deployment"], manifests["Service"], manifests["HorizontalPodAutoscaler"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["port"]: p["targetPort"] for p in service["spec"]["ports"]} == {8500: "grpc", 8501: "http"}
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_kustomization_files_exist(kustomization):
    for path in kustomization["resources"] + kustomization["configMapGenerator"][0]["files"]:
        assert (DEPLOY / path).is_file(), path
        assert not Path(path).is_absolute() and ".." not in Path(path).parts  # kustomize refuses files outside


# ------------------------------------------------------------------------------------------------------ compose

def test_compose_serves_the_pusher_folder_with_the_config_files(compose):
    (service,) = compose["services"].values()
    assert re.fullmatch(r"tensorflow/serving:\d+\.\d+\.\d+", service["image"])
    assert {p.split(":")[-1] for p in service["ports"]} >= {"8500", "8501"}
    _check_server_flags(service["entrypoint"] + service["command"],
                        ["models.config", "batching_parameters.txt", "monitoring.config"])
    volumes = {v["target"]: v for v in service["volumes"]}
    assert all(v["read_only"] for v in volumes.values())
    # The Pusher writes <output>/serving/<model_name>/<version>/; that serving folder is /models in the container.
    assert volumes[MODELS_MOUNT]["source"].endswith("../../outputs/serving}")
    default_output = PipelineConfig(data_root="-").serving_dir
    assert (DEPLOY / "../.." / default_output).resolve() == (DEPLOY.parents[1] / "outputs" / "serving")
    for target, volume in volumes.items():
        if target.startswith(CONFIG_MOUNT):
            source = re.sub(r"\$\{MODELS_CONFIG:-([^}]+)\}", r"\1", volume["source"])
            assert (DEPLOY / source).is_file(), source
    assert service["read_only"] is True and service["user"] != "0" and "/tmp" in service["tmpfs"]


# ---------------------------------------------------------------------------------------- TF Serving configs

@pytest.mark.parametrize("name", ["models.config", "models.latest.config"])
def test_models_config_points_at_the_pusher_layout(name):
    config = _model_server_config(name)
    (model,) = config.model_config_list.config
    defaults = PipelineConfig(data_root="-")
    assert model.name == defaults.model_name
    assert model.base_path == f"{MODELS_MOUNT}/{defaults.model_name}"  # compose/k8s: serving dir -> /models
    assert model.model_platform == "tensorflow"


def test_models_config_serves_two_versions_labelled_stable_and_canary():
    (model,) = _model_server_config("models.config").model_config_list.config
    versions = list(model.model_version_policy.specific.versions)
    assert len(versions) >= 2 and len(set(versions)) == len(versions)
    labels = dict(model.version_labels)
    assert set(labels) == {"stable", "canary"}
    assert set(labels.values()) <= set(versions) and labels["stable"] != labels["canary"]


def test_models_config_parse_fails_on_a_typo():
    """The proto parse above is a real check: an unknown field is an error, as in the server."""
    with pytest.raises(text_format.ParseError):
        text_format.Parse('model_config_list { config { nmae: "x" } }', model_server_config_pb2.ModelServerConfig())


def test_batching_parameters():
    params = text_format.Parse((DEPLOY / "batching_parameters.txt").read_text(), BatchingParameters())
    sizes = list(params.allowed_batch_sizes)
    assert sizes == sorted(set(sizes)) and sizes[-1] == params.max_batch_size.value  # TF Serving's two rules
    assert params.batch_timeout_micros.value > 0 and params.num_batch_threads.value >= 1
    assert params.max_enqueued_batches.value >= 1


def test_monitoring_config():
    config = text_format.Parse((DEPLOY / "monitoring.config").read_text(), MonitoringConfig())
    assert config.prometheus_config.enable and config.prometheus_config.path.startswith("/")
