"""The deployment's config files (deploy/) load in the tools that read them.

Each file is handed to the real reader where one runs offline: Dagster builds an instance from deploy/dagster.yaml
on a real PostgreSQL, the Celery and Kubernetes executors validate their run config, `recsys serve`, `mlflow server`
and `dagster api grpc` parse the commands the manifests run, the Kubernetes objects build as the Kubernetes
client's API models, and a Celery worker started from deploy/executors/celery.yaml runs a job's steps through a
real Redis. The Helm chart itself is not available offline, so its values are checked against the chart's keys
as its values schema (chart 1.13) names them.
"""

from __future__ import annotations

import _thread
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CELERY_YAML = DEPLOY / "executors" / "celery.yaml"
EXPECTED_YAML = {"dagster.yaml", "storage.yaml", "helm/values.yaml", "executors/celery.yaml", "executors/k8s.yaml",
                 "mlflow/mlflow.yaml", "serving/serving.yaml"}
WORKER_START_SECONDS = 45.0
RUN_SECONDS = 90.0


def _documents(relative: str) -> list[dict]:
    return list(yaml.safe_load_all((DEPLOY / relative).read_text()))


def _manifest(relative: str, kind: str) -> dict:
    (found,) = [d for d in _documents(relative) if d["kind"] == kind]
    return found


def test_every_yaml_under_deploy_parses():
    found = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*.y*ml")}
    assert found >= EXPECTED_YAML
    for relative in sorted(found):
        documents = _documents(relative)
        assert documents and all(isinstance(d, dict) and d for d in documents), relative


# --- the Dagster instance -----------------------------------------------------------------------------------

def test_instance_yaml_builds_a_postgres_instance_with_queue_and_pools(postgres_server, tmp_path, monkeypatch):
    import dagster as dg
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    postgres_server.create_database("deploy_instance")
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the project installs psycopg2.
    monkeypatch.setenv("RECSYS_POSTGRES_URL", postgres_server.url("deploy_instance", scheme="postgresql+psycopg2"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        config = instance.get_concurrency_config()
        assert config.run_queue_config.max_concurrent_runs == 4
        limits = {(t["key"], t["value"]): t["limit"] for t in config.run_queue_config.tag_concurrency_limits}
        assert limits == {("recsys/trigger", "retrain_sensor"): 1, ("recsys/trigger", "landing_sensor"): 1}
        assert config.pool_config.default_pool_limit == 1
        assert instance.run_retries_max_retries == 1 and not instance.run_retries_retry_on_asset_or_op_failure
        # The tables exist and take writes: a run recorded here is read back from PostgreSQL.
        run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job(), run_id=None)
        assert instance.get_run_by_id(run.run_id).job_name == "noop"


# --- the executors ------------------------------------------------------------------------------------------

def _one_op_job(executor):
    import dagster as dg

    @dg.op
    def noop() -> None:
        return None

    @dg.job(executor_def=executor)
    def job():
        noop()

    return job


def test_celery_run_config_validates_against_the_celery_executor(monkeypatch):
    import dagster as dg
    from dagster_celery import celery_executor

    monkeypatch.setenv("DAGSTER_CELERY_BROKER_URL", "redis://broker.example:6379/0")
    monkeypatch.setenv("DAGSTER_CELERY_BACKEND_URL", "redis://broker.example:6379/1")
    job = _one_op_job(celery_executor)
    run_config = _documents("executors/celery.yaml")[0]
    resolved = dg.validate_run_config(job, run_config)["execution"]["celery"]
    assert resolved["broker"] == "redis://broker.example:6379/0"
    assert resolved["backend"] == "redis://broker.example:6379/1"
    assert resolved["config_source"]["worker_prefetch_multiplier"] == 1
    # The schema is strict, so a misspelt setting in the file would have failed above rather than been dropped.
    run_config["execution"]["config"]["brokr"] = run_config["execution"]["config"].pop("broker")
    with pytest.raises(dg.DagsterInvalidConfigError, match="brokr"):
        dg.validate_run_config(job, run_config)


def test_k8s_run_config_validates_and_names_real_steps():
    import dagster as dg
    from dagster_k8s import k8s_job_executor

    from orchestration.defs.embeddings import item_embeddings
    from orchestration.defs.models import sasrec_model

    resolved = dg.validate_run_config(_one_op_job(k8s_job_executor), _documents("executors/k8s.yaml")[0])
    per_step = resolved["execution"]["k8s"]["per_step_k8s_config"]
    # Keys are step names: a renamed asset would silently lose its GPU.
    assert set(per_step) == {sasrec_model.op.name, item_embeddings.op.name}
    for step in per_step.values():
        assert step["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == 1


# --- the Helm chart's values --------------------------------------------------------------------------------

# The keys of the dagster/dagster chart (1.13) that these values may use, as the chart's values schema
# (helm/dagster/schema) defines them; None: a Kubernetes object or free map, not checked further. A list's
# allowed keys apply to each of its items.
_K8S = None
_IMAGE = {"repository": _K8S, "tag": _K8S, "pullPolicy": _K8S}
_TAG_LIMIT = {"key": _K8S, "value": _K8S, "limit": _K8S}
_RUN_K8S_CONFIG = dict.fromkeys(
    ("containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"), _K8S)
_USER_DEPLOYMENT = {
    "name": _K8S, "image": _IMAGE, "port": _K8S, "dagsterApiGrpcArgs": _K8S, "codeServerArgs": _K8S,
    "includeConfigInLaunchedRuns": {"enabled": _K8S}, "env": _K8S, "envConfigMaps": _K8S, "envSecrets": _K8S,
    **dict.fromkeys(("annotations", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
                     "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe", "labels",
                     "volumeMounts", "volumes", "schedulerName"), _K8S),
}
CHART_KEYS = {
    "global": {"postgresqlSecretName": _K8S, "dagsterHome": _K8S, "serviceAccountName": _K8S,
               "celeryConfigSecretName": _K8S},
    "dagsterWebserver": {"replicaCount": _K8S, "image": _IMAGE, "service": {"type": _K8S, "port": _K8S,
                                                                             "annotations": _K8S}},
    "dagster-user-deployments": {"enabled": _K8S, "enableSubchart": _K8S, "imagePullSecrets": _K8S,
                                 "deployments": _USER_DEPLOYMENT},
    "postgresql": {"postgresqlScheme": _K8S, "image": _IMAGE, "enabled": _K8S, "postgresqlHost": _K8S,
                   "postgresqlUsername": _K8S, "postgresqlPassword": _K8S, "postgresqlDatabase": _K8S,
                   "postgresqlParams": _K8S, "service": {"port": _K8S}},
    "generatePostgresqlPasswordSecret": _K8S,
    "runLauncher": {"type": _K8S, "config": {"k8sRunLauncher": {
        **dict.fromkeys(("image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
                         "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
                         "failPodOnRunFailure", "resources", "schedulerName", "securityContext"), _K8S),
        "runK8sConfig": _RUN_K8S_CONFIG}}},
    "dagsterDaemon": {
        "enabled": _K8S, "image": _IMAGE, "heartbeatTolerance": _K8S,
        "runCoordinator": {"enabled": _K8S, "type": _K8S, "config": {"queuedRunCoordinator": {
            "maxConcurrentRuns": _K8S, "tagConcurrencyLimits": _TAG_LIMIT, "dequeueIntervalSeconds": _K8S,
            "dequeueNumWorkers": _K8S, "dequeueUseThreads": _K8S}}},
        # Read by the chart's instance template (templates/configmap-instance.yaml).
        "runMonitoring": dict.fromkeys(("enabled", "startTimeoutSeconds", "cancelTimeoutSeconds",
                                        "maxResumeRunAttempts", "pollIntervalSeconds",
                                        "freeSlotsAfterRunEndSeconds"), _K8S),
        "runRetries": {"enabled": _K8S, "maxRetries": _K8S},
        **dict.fromkeys(("env", "envConfigMaps", "envSecrets", "resources", "sensors", "schedules"), _K8S),
    },
    "concurrency": {"enabled": _K8S,
                    "pools": {"defaultLimit": _K8S, "granularity": _K8S, "opGranularityRunBuffer": _K8S},
                    "runs": {"maxConcurrentRuns": _K8S, "tagConcurrencyLimits": _TAG_LIMIT}},
    "telemetry": {"enabled": _K8S},
}


def _unknown_keys(values, allowed, path: str = "") -> list[str]:
    if allowed is None:
        return []
    if isinstance(values, list):
        return [bad for i, item in enumerate(values) for bad in _unknown_keys(item, allowed, f"{path}[{i}]")]
    unknown = []
    for key, value in values.items():
        if key not in allowed:
            unknown.append(f"{path}.{key}".lstrip("."))
        else:
            unknown.extend(_unknown_keys(value, allowed[key], f"{path}.{key}"))
    return unknown


def test_helm_values_use_only_keys_the_chart_has():
    assert _unknown_keys(_documents("helm/values.yaml")[0], CHART_KEYS) == []


def test_unknown_helm_key_is_caught():
    assert _unknown_keys({"dagsterWebServer": {}, "runLauncher": {"config": {"k8sRunLauncher": {"runK8s": 1}}}},
                         CHART_KEYS) == ["dagsterWebServer", "runLauncher.config.k8sRunLauncher.runK8s"]


def test_helm_values_serve_this_code_location_with_the_instance_settings():
    from dagster._cli.api import grpc_command

    values = _documents("helm/values.yaml")[0]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    # The chart starts the code server as `dagster api grpc -h 0.0.0.0 -p PORT <dagsterApiGrpcArgs>`.
    arguments = ["-h", "0.0.0.0", "-p", str(deployment["port"]), *deployment["dagsterApiGrpcArgs"]]
    parsed = grpc_command.make_context("grpc", arguments).params
    (location,) = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"]
    assert parsed["module_name"] == location["python_module"]["module_name"]
    assert {e["name"] for e in deployment["env"]} >= {"RECSYS_HOME", "RECSYS_MLFLOW_ARTIFACTS"}
    assert deployment["envSecrets"] == [{"name": "recsys-secrets"}]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    # The chart's concurrency block is the instance's, in camelCase: the two deployments limit alike.
    instance = _documents("dagster.yaml")[0]["concurrency"]
    chart = values["concurrency"]
    assert chart["runs"]["maxConcurrentRuns"] == instance["runs"]["max_concurrent_runs"]
    assert chart["runs"]["tagConcurrencyLimits"] == instance["runs"]["tag_concurrency_limits"]
    assert chart["pools"] == {"defaultLimit": instance["pools"]["default_limit"],
                              "granularity": instance["pools"]["granularity"]}


# --- Kubernetes objects -------------------------------------------------------------------------------------

def _k8s_object(model: str, fields: dict):
    """``fields`` as the Kubernetes API's ``model`` (the kubernetes client's generated models, which refuse an
    unknown field and a missing required one)."""
    import kubernetes
    from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict

    model_class = getattr(kubernetes.client, model)
    return k8s_model_from_dict(model_class, k8s_snake_case_dict(model_class, fields))


@pytest.mark.parametrize("relative", ["storage.yaml", "mlflow/mlflow.yaml", "serving/serving.yaml"])
def test_manifests_are_valid_kubernetes_objects(relative):
    for document in _documents(relative):
        version = document["apiVersion"].rpartition("/")[2]
        _k8s_object(version.capitalize() + document["kind"], document)


def test_every_pod_mounts_the_shared_claim_at_recsys_home():
    claim = _manifest("storage.yaml", "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (deployment,) = _documents("helm/values.yaml")[0]["dagster-user-deployments"]["deployments"]
    pods = [deployment] + [_manifest(f, "Deployment")["spec"]["template"]["spec"]
                           for f in ("mlflow/mlflow.yaml", "serving/serving.yaml")]
    for pod in pods:
        (volume,) = pod["volumes"]
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        mounts = pod.get("volumeMounts") or pod["containers"][0]["volumeMounts"]
        assert mounts == [{"name": volume["name"], "mountPath": "/var/lib/recsys"}]


def test_kubernetes_validation_refuses_a_misspelt_field():
    deployment = _manifest("serving/serving.yaml", "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(Exception, match="httpGett"):
        _k8s_object("V1Deployment", deployment)


def test_kubernetes_parts_of_the_helm_values_and_executor_config_are_valid():
    values = _documents("helm/values.yaml")[0]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    for variable in deployment["env"]:
        _k8s_object("V1EnvVar", variable)
    for volume in deployment["volumes"]:
        _k8s_object("V1Volume", volume)
    for mount in deployment["volumeMounts"]:
        _k8s_object("V1VolumeMount", mount)
    _k8s_object("V1ResourceRequirements", deployment["resources"])
    run_config = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    _k8s_object("V1ResourceRequirements", run_config["containerConfig"]["resources"])
    _k8s_object("V1JobSpec", {"template": {}, **run_config["jobSpecConfig"]})
    steps = _documents("executors/k8s.yaml")[0]["execution"]["config"]
    for step in [steps["step_k8s_config"], *steps["per_step_k8s_config"].values()]:
        _k8s_object("V1ResourceRequirements", step["container_config"]["resources"])
        for toleration in step.get("pod_spec_config", {}).get("tolerations", []):
            _k8s_object("V1Toleration", toleration)


# --- MLflow and the serving API -----------------------------------------------------------------------------

def test_mlflow_server_command_parses_with_a_postgres_store():
    from mlflow.cli import server

    container = _manifest("mlflow/mlflow.yaml", "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["mlflow", "server"]
    parsed = server.make_context("server", container["args"]).params
    assert parsed["backend_store_uri"] == "$(MLFLOW_BACKEND_STORE_URI)"
    (variable,) = container["env"]
    assert variable["name"] == "MLFLOW_BACKEND_STORE_URI"
    assert parsed["artifacts_destination"].startswith("file:///var/lib/recsys/")
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    service = _manifest("mlflow/mlflow.yaml", "Service")
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_serving_deployment_runs_recsys_serve_behind_a_balanced_service():
    from orchestration.apps.cli import _parser
    from orchestration.serving.api import create_app
    from orchestration.serving.auth import ApiAccess

    deployment = _manifest("serving/serving.yaml", "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][0] == "recsys"
    args = _parser().parse_args(container["command"][1:])
    assert (args.command, args.host, args.workers) == ("serve", "0.0.0.0", 1)
    assert container["ports"] == [{"name": "http", "containerPort": args.port}]
    routes = {route.path for route in create_app(access=ApiAccess.from_environment({})).routes}
    for probe in ("readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
        assert "/health" in routes
    assert deployment["spec"]["replicas"] >= 2
    service = _manifest("serving/serving.yaml", "Service")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert _manifest("serving/serving.yaml", "HorizontalPodAutoscaler")["spec"]["minReplicas"] == \
        deployment["spec"]["replicas"]


# --- the Celery path, for real ------------------------------------------------------------------------------

def _wait_for_worker(broker: str, worker: subprocess.Popen, log: Path) -> None:
    from celery import Celery

    app = Celery(broker=broker)
    deadline = time.monotonic() + WORKER_START_SECONDS
    while not app.control.ping(timeout=1.0):
        if worker.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the Celery worker did not answer a ping:\n{log.read_text()[-4000:]}")
    app.close()


def _stop(worker: subprocess.Popen) -> None:
    """Stop the worker and the children it forked: the CLI runs `celery worker` as a child, in the group that
    ``start_new_session`` gave it, which is signalled as a whole."""
    try:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=20)
    except ProcessLookupError:
        pass


# dagster-celery builds its task object once per submitted step; Celery warns at each rebuild after the first.
@pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")
def test_celery_executor_runs_each_step_in_a_worker(redis_server, tmp_path, monkeypatch):
    import dagster as dg

    from tests.integration.celery_pid_job import pid_job

    home = tmp_path / "dagster_home"  # sqlite storage: the worker writes step events where the run reads them
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    settings = {"DAGSTER_HOME": str(home), "DAGSTER_CELERY_BROKER_URL": redis_server,
                "DAGSTER_CELERY_BACKEND_URL": redis_server.rsplit("/", 1)[0] + "/1"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path / "worker.log"
    with log.open("w") as output:
        worker = subprocess.Popen(
            [str(bin_dir / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(CELERY_YAML),
             "-q", "dagster", "--", "--concurrency=2"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    # A lost worker would leave the run waiting for its tasks forever: past the deadline, interrupt it as Ctrl-C
    # would, which the executor answers by revoking the tasks and failing the run.
    watchdog = threading.Timer(RUN_SECONDS, _thread.interrupt_main)
    try:
        _wait_for_worker(settings["DAGSTER_CELERY_BROKER_URL"], worker, log)
        watchdog.start()
        run_config = _documents("executors/celery.yaml")[0]
        with (dg.DagsterInstance.from_config(str(home)) as instance,
              dg.execute_job(dg.reconstructable(pid_job), instance, run_config=run_config) as result):
            assert result.success, log.read_text()[-4000:]
            pids = result.output_for_node("step_pids")
            messages = [e.message for e in instance.all_logs(result.run_id)]
    finally:
        watchdog.cancel()
        _stop(worker)
    assert len(pids) == 3 and os.getpid() not in pids
    assert sum("in celery worker" in m for m in messages) == 3
