"""The Terraform configuration checked against the code, statically (no Google account needed).

``terraform/`` is parsed with python-hcl2 and compared with what the package actually does: the entry
points of ``functions/main.py``, the loops, the warehouse models and their generated schema files, the
settings the functions read, the log lines the alerts match, and the credentials the Alpaca adapters
need. When either side changes, a test here says which declaration to update.

The push design (docs/deploy.md): each subscriber function is reached by an explicit Pub/Sub push
subscription (dead-letter and retry policies on it), never by an Eventarc ``event_trigger``. One test
replays a raw push request through functions-framework to prove the CloudEvent functions accept it.
"""

from __future__ import annotations

import ast
import base64
import datetime as dt
import functools
import io
import json
import logging
import math
import re
import shutil
import subprocess
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import hcl2
import pytest
from goldthread.config import Settings, load_settings
from goldthread.models.hot import RunStatus
from goldthread.models.warehouse import ALL_TABLES, TABLES_BY_NAME
from goldthread.models.work_items import Loop
from goldthread.pipeline.context import Context
from goldthread.schema.generate import bigquery_schema, deployment_artifacts

REPO = Path(__file__).resolve().parents[1]
TF = REPO / "terraform"
MAIN_PY = REPO / "functions" / "main.py"

# Entry points declared in Terraform ahead of their code (another issue writes them). Deploying before
# they exist fails the build of that function, so this set must shrink to empty.
PENDING_ENTRY_POINTS: dict[str, str] = {}

# Sample values for the variables without a default, to evaluate expressions that use them.
REQUIRED_SAMPLES = {"project_id": "my-project-123", "git_hash": "0123abc"}

SECRET_WORDS = ("key", "secret", "token", "password", "credential")


# -- parsing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Every top-level block of terraform/*.tf, merged across files."""

    locals: dict[str, Any]
    variables: dict[str, dict[str, Any]]
    resources: dict[str, dict[str, dict[str, Any]]]
    data: dict[str, dict[str, dict[str, Any]]]
    outputs: dict[str, dict[str, Any]]
    files: dict[str, dict[str, Any]]
    text: str

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        """The body of ``resource "<kind>" "<name>"``."""
        assert name in self.resources.get(kind, {}), f"terraform/ declares no {kind}.{name}"
        return self.resources[kind][name]


@functools.cache
def config() -> Config:
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    locals_: dict[str, Any] = {}
    variables: dict[str, dict[str, Any]] = {}
    resources: dict[str, dict[str, dict[str, Any]]] = {}
    data: dict[str, dict[str, dict[str, Any]]] = {}
    outputs: dict[str, dict[str, Any]] = {}
    files: dict[str, dict[str, Any]] = {}
    texts = []
    for path in sorted(TF.glob("*.tf")):
        texts.append(path.read_text())
        with path.open() as f:
            parsed = hcl2.load(f, serialization_options=options)
        files[path.name] = parsed
        for block in parsed.get("locals", []):
            for name, value in block.items():
                assert name not in locals_, f"local.{name} is declared twice"
                locals_[name] = value
        for block in parsed.get("variable", []):
            variables.update(block)
        for block in parsed.get("output", []):
            outputs.update(block)
        for target, blocks in (("resource", resources), ("data", data)):
            for block in parsed.get(target, []):
                for kind, named in block.items():
                    for name, body in named.items():
                        assert name not in blocks.get(kind, {}), f"{kind}.{name} is declared twice"
                        blocks.setdefault(kind, {})[name] = body
    return Config(locals_, variables, resources, data, outputs, files, "\n".join(texts))


def one(blocks: Any) -> dict[str, Any]:
    """The single nested block of a list of blocks (``retry_policy { ... }``)."""
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected exactly one block, got {blocks!r}"
    return blocks[0]


def dynamic(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The ``dynamic "<name>"`` block of a resource body."""
    for block in body.get("dynamic", []):
        if name in block:
            return block[name]
    raise AssertionError(f"no dynamic {name!r} block")


def variable_value(name: str) -> Any:
    """A variable's default, or the sample value used for required ones."""
    spec = config().variables[name]
    return spec["default"] if "default" in spec else REQUIRED_SAMPLES[name]


def resolve(value: Any) -> Any:
    """Evaluate the few expression shapes the env block uses: literals, ``${var.x}``, ``${tostring(var.x)}``."""
    if not isinstance(value, str):
        return value
    m = re.fullmatch(r"\$\{(?:tostring\()?var\.(\w+)\)?\}", value)
    if not m:
        assert "${" not in value, f"cannot evaluate {value!r} here"
        return value
    resolved = variable_value(m.group(1))
    return str(resolved).lower() if isinstance(resolved, bool) else resolved


# -- the code side --------------------------------------------------------------------------------


@functools.cache
def entry_points() -> dict[str, str]:
    """Entry point name -> ``http`` or ``cloud_event``, from the decorators in functions/main.py."""
    tree = ast.parse(MAIN_PY.read_text())
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            if (
                isinstance(deco, ast.Attribute)
                and isinstance(deco.value, ast.Name)
                and deco.value.id == "functions_framework"
                and deco.attr in ("http", "cloud_event")
            ):
                found[node.name] = deco.attr
    assert found, "no functions_framework entry points found in functions/main.py"
    return found


def functions() -> dict[str, dict[str, Any]]:
    return config().locals["functions"]


def loops_declared() -> dict[str, str]:
    """``local.loops`` evaluated: loop -> subscriber function (the for-expression in pubsub.tf)."""
    assert config().locals["loops"] == (
        '${{for name, f in local.functions : f.topic => name if f.trigger == "pubsub" && f.topic != "dead_letters"}}'
    )
    return {
        f["topic"]: name
        for name, f in functions().items()
        if f["trigger"] == "pubsub" and f["topic"] != "dead_letters"
    }


# -- layout and formatting ------------------------------------------------------------------------


def test_configuration_is_split_by_concern() -> None:
    expected = {
        "providers.tf", "variables.tf", "pubsub.tf", "functions.tf", "scheduler.tf", "bigquery.tf",
        "firestore.tf", "iam.tf", "secrets.tf", "monitoring.tf", "outputs.tf",
    }
    assert expected <= set(config().files)
    assert (TF / "backend.tf.example").exists() and 'backend "gcs"' in (TF / "backend.tf.example").read_text()
    assert (TF / "terraform.tfvars.example").exists()


def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not on PATH; `terraform fmt -check -recursive terraform` runs in CI (make lint)")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TF)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"


def test_variables_have_types_descriptions_and_validation() -> None:
    for name, spec in config().variables.items():
        assert spec.get("description"), f"variable {name} has no description"
        assert spec.get("type"), f"variable {name} has no type"
        if spec["type"] != "bool":
            assert spec.get("validation"), f"variable {name} has no validation block"


def test_outputs_have_descriptions() -> None:
    for name, spec in config().outputs.items():
        assert spec.get("description"), f"output {name} has no description"


# -- functions ------------------------------------------------------------------------------------


def test_every_entry_point_is_deployed() -> None:
    missing = set(entry_points()) - set(functions())
    assert not missing, f"functions/main.py entry points with no function in terraform/functions.tf: {missing}"


def test_every_declared_function_has_its_entry_point() -> None:
    absent = set(functions()) - set(entry_points())
    unexpected = absent - set(PENDING_ENTRY_POINTS)
    assert not unexpected, f"terraform/functions.tf deploys functions missing from functions/main.py: {unexpected}"
    landed = set(PENDING_ENTRY_POINTS) - absent
    assert not landed, f"{landed} exist in functions/main.py now: remove them from PENDING_ENTRY_POINTS"
    if absent:
        pytest.xfail(
            "declared ahead of their code, terraform apply cannot build them yet: "
            + ", ".join(f"{n} ({PENDING_ENTRY_POINTS[n]})" for n in sorted(absent))
        )


def test_trigger_matches_the_entry_point_signature() -> None:
    for name, kind in entry_points().items():
        trigger = functions()[name]["trigger"]
        expected = "http" if kind == "http" else "pubsub"
        assert trigger == expected, f"{name} is a {kind} function but declared with trigger {trigger!r}"


def test_function_resource_wiring() -> None:
    fn = config().resource("google_cloudfunctions2_function", "fn")
    assert fn["for_each"] == "${local.functions}"
    build = one(fn["build_config"])
    assert build["entry_point"] == "${each.key}", "the map key is the entry point"
    assert build["runtime"] == "${local.python_runtime}"
    assert config().locals["python_runtime"] == "python311", "runtime pinned to the Python the package targets"
    assert build["service_account"] == '${google_service_account.sa["builder"].id}'
    storage = one(one(build["source"])["storage_source"])
    assert storage["object"] == "${google_storage_bucket_object.source.name}"

    service = one(fn["service_config"])
    assert service["available_memory"] == "${each.value.memory}"
    assert service["timeout_seconds"] == "${each.value.timeout}"
    assert service["max_instance_count"] == "${each.value.max_instances}"
    assert service["environment_variables"] == (
        '${each.key == "canary" ? merge(local.function_env, local.canary_env) : local.function_env}'
    )
    assert service["ingress_settings"] == "${var.ingress_settings}"
    for name, f in functions().items():
        assert re.fullmatch(r"\d+(Mi|Gi)", f["memory"]), name
        assert f["timeout"] == "${var.subscriber_timeout_seconds}" or 1 <= f["timeout"] <= 3600, name
        assert isinstance(f["max_instances"], int) or f["max_instances"].startswith("${var."), name


def test_no_function_has_an_event_trigger() -> None:
    """An Eventarc trigger would add a second subscription without the dead-letter policy."""
    fn = config().resource("google_cloudfunctions2_function", "fn")
    assert "event_trigger" not in fn
    assert "dynamic" not in fn or all("event_trigger" not in d for d in fn["dynamic"])
    assert "google_eventarc_trigger" not in config().resources


def test_no_function_runs_as_the_default_compute_service_account() -> None:
    fn = config().resource("google_cloudfunctions2_function", "fn")
    assert one(fn["service_config"])["service_account_email"] == "${google_service_account.sa[each.value.role].email}"
    runtime_roles = config().locals["runtime_roles"]
    for name, f in functions().items():
        assert f["role"] in runtime_roles, f"{name} runs as {f['role']!r}, which is not a declared runtime role"
    sa = config().resource("google_service_account", "sa")
    assert sa["for_each"] == "${local.service_accounts}"
    text = config().text
    for default in ("-compute@developer", "@appspot.gserviceaccount.com", "@cloudbuild.gserviceaccount.com"):
        assert default not in text, f"terraform/ refers to a default service account ({default})"


def test_functions_get_the_production_settings() -> None:
    env = {k: str(resolve(v)) for k, v in config().locals["function_env"].items()}
    assert config().variables["git_hash"].get("default") is None, "the commit must be given at each deploy"
    assert config().locals["function_env"]["GOLDTHREAD_GIT_HASH"] == "${var.git_hash}"
    settings = load_settings(env)
    assert (settings.hot, settings.bus, settings.warehouse, settings.broker, settings.market_data) == (
        "firestore", "pubsub", "bigquery", "alpaca", "alpaca",
    )
    assert settings.project == REQUIRED_SAMPLES["project_id"]
    assert settings.git_hash == REQUIRED_SAMPLES["git_hash"]
    assert settings.dataset == variable_value("dataset")
    assert settings.topic_prefix == variable_value("name_prefix")
    assert settings.max_delivery_attempts == variable_value("max_delivery_attempts")
    assert not any(k.startswith("APCA_") for k in env), "Alpaca credentials only through Secret Manager"


def test_the_canary_is_told_which_alpaca_orders_to_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Alpaca cannot place the canary's two orders for it (only the simulator can): the deployment names them."""
    from goldthread.adapters.alpaca_broker import AlpacaBroker
    from goldthread.bi import canary

    assert not hasattr(AlpacaBroker, "submit_market_order"), "Alpaca places the canary orders now: drop the variable"
    assert config().locals["canary_env"] == (
        '${length(var.canary_order_ids) == 2 ? {GOLDTHREAD_CANARY_ORDERS = join(",", var.canary_order_ids)} : {}}'
    )
    assert canary.ORDERS_ENV == "GOLDTHREAD_CANARY_ORDERS"
    assert "canary_env" not in config().locals["function_env"], "only the canary function gets the orders"
    monkeypatch.setenv(canary.ORDERS_ENV, ",".join(["entry-0001", "exit-0002"]))  # what join(",", ...) gives
    assert canary.canary_order_ids() == ("entry-0001", "exit-0002")
    condition = one(config().variables["canary_order_ids"]["validation"])["condition"]
    assert "length(var.canary_order_ids) == 0 ||" in condition and "length(var.canary_order_ids) == 2" in condition
    pattern = re.search(r'regex\("(.+?)", id\)', condition)
    assert pattern and not re.match(pattern.group(1), "a,b"), "an id with a comma would split into three"
    assert re.match(pattern.group(1), "61e69015-8549-4bfd-b9c3-01e75843f47d"), "Alpaca order ids are UUIDs"


def test_source_archive_holds_main_py_the_package_and_requirements_only() -> None:
    archive = config().data["archive_file"]["source"]
    static = {s["filename"]: s["content"] for s in archive["source"]}
    assert static == {
        "main.py": '${file("${local.repo_root}/functions/main.py")}',
        "requirements.txt": '${file("${local.repo_root}/requirements.txt")}',
    }
    package = dynamic(archive, "source")
    assert package["for_each"] == "${local.package_files}"
    content = one(package["content"])
    assert content["filename"] == "${source.value}"
    assert content["content"] == '${file("${local.repo_root}/shared/${source.value}")}'
    assert config().locals["repo_root"] == "${path.module}/.."
    assert 'fileset("${local.repo_root}/shared", "goldthread/**")' in config().locals["package_files"]
    # What that selects today: the whole package, readable by Terraform's file() (UTF-8 text only).
    files = [
        p for p in (REPO / "shared" / "goldthread").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    assert any(p.name == "entrypoints.py" for p in files)
    for path in files:
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            pytest.fail(f"{path} is not UTF-8 text: terraform's file() cannot put it in the source archive")


# -- Pub/Sub --------------------------------------------------------------------------------------


def test_every_loop_has_a_topic_a_subscription_and_a_subscriber() -> None:
    loops = loops_declared()
    assert set(loops) == {loop.value for loop in Loop}, "one subscriber function per loop, and no other"
    for loop, name in loops.items():
        assert entry_points().get(name) == "cloud_event", f"{loop}: {name} is not a CloudEvent entry point"
    topics = config().locals["topics"]
    assert '"${var.name_prefix}-${replace(loop, "_", "-")}"' in topics.replace("=> ", "")
    assert '{dead_letters = "${var.name_prefix}-dead-letters"}' in topics
    topic = config().resource("google_pubsub_topic", "topic")
    assert topic["for_each"] == "${local.topics}" and topic["name"] == "${each.value}"
    # ... the names goldthread.config gives the same loops
    prefix = variable_value("name_prefix")
    settings = Settings(topic_prefix=prefix)
    for loop in Loop:
        assert settings.topic(loop) == f"{prefix}-{loop.value.replace('_', '-')}"
        assert settings.subscription(loop) == f"{settings.topic(loop)}-sub"
    assert settings.dead_letter_topic == f"{prefix}-dead-letters"


def test_loop_subscriptions_push_to_their_subscriber_with_retry_and_dead_letter_policies() -> None:
    sub = config().resource("google_pubsub_subscription", "loop")
    assert sub["for_each"] == "${local.loops}"
    assert sub["name"] == "${google_pubsub_topic.topic[each.key].name}-sub"
    assert sub["topic"] == "${google_pubsub_topic.topic[each.key].id}"
    assert sub["ack_deadline_seconds"] == "${var.subscriber_timeout_seconds}"
    assert one(sub["expiration_policy"])["ttl"] == ""

    retry = one(sub["retry_policy"])
    assert retry == {
        "minimum_backoff": "${var.retry_minimum_backoff_seconds}s",
        "maximum_backoff": "${var.retry_maximum_backoff_seconds}s",
    }
    assert variable_value("retry_minimum_backoff_seconds") < variable_value("retry_maximum_backoff_seconds")

    dead = one(sub["dead_letter_policy"])
    assert dead["dead_letter_topic"] == '${google_pubsub_topic.topic["dead_letters"].id}'
    assert dead["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    assert 5 <= variable_value("max_delivery_attempts") <= 100

    push = one(sub["push_config"])
    uri = "${google_cloudfunctions2_function.fn[each.value].service_config[0].uri}"
    path = "/projects/${var.project_id}/topics/${google_pubsub_topic.topic[each.key].name}"
    assert push["push_endpoint"] == uri + path
    oidc = one(push["oidc_token"])
    assert oidc == {"service_account_email": '${google_service_account.sa["pubsub_push"].email}', "audience": uri}

    # The subscriber's timeout is the ack deadline: Pub/Sub must not redeliver while it still runs.
    for name in loops_declared().values():
        assert functions()[name]["timeout"] == "${var.subscriber_timeout_seconds}"


def test_dead_letter_topic_has_a_retained_subscription_and_a_sink() -> None:
    retained = config().resource("google_pubsub_subscription", "dead_letters_retained")
    assert retained["name"] == '${google_pubsub_topic.topic["dead_letters"].name}-sub'
    assert retained["topic"] == '${google_pubsub_topic.topic["dead_letters"].id}'
    assert retained["retain_acked_messages"] is True
    assert retained["message_retention_duration"] == "${var.dead_letter_retention_days * 86400}s"
    assert variable_value("dead_letter_retention_days") >= 7
    assert "var.dead_letter_retention_days >= 7" in one(config().variables["dead_letter_retention_days"]["validation"])[
        "condition"
    ]
    assert "push_config" not in retained, "the retained subscription is pulled by people, never pushed"
    assert one(retained["expiration_policy"])["ttl"] == ""

    sink = config().resource("google_pubsub_subscription", "dead_letter_sink")
    assert sink["topic"] == '${google_pubsub_topic.topic["dead_letters"].id}'
    assert "dead_letter_policy" not in sink
    assert sink.get("retry_policy")
    push = one(sink["push_config"])
    sink_uri = '${google_cloudfunctions2_function.fn["dead_letter_sink"].service_config[0].uri}'
    assert push["push_endpoint"].startswith(sink_uri + "/projects/${var.project_id}/topics/")
    assert push["push_endpoint"].endswith('/topics/${google_pubsub_topic.topic["dead_letters"].name}')
    assert one(push["oidc_token"])["service_account_email"] == '${google_service_account.sa["pubsub_push"].email}'
    assert entry_points()["dead_letter_sink"] == "cloud_event"
    assert functions()["dead_letter_sink"]["trigger"] == "pubsub"
    assert functions()["dead_letter_sink"]["topic"] == "dead_letters"


def test_pubsub_service_agent_can_dead_letter() -> None:
    agent = config().locals["pubsub_service_agent"]
    assert agent == "${google_project_service_identity.pubsub.member}"
    identity = config().resource("google_project_service_identity", "pubsub")
    assert identity["service"] == "pubsub.googleapis.com" and identity["provider"] == "google-beta"
    publisher = config().resource("google_pubsub_topic_iam_member", "agent_dead_letter_publisher")
    assert publisher["topic"] == '${google_pubsub_topic.topic["dead_letters"].name}'
    assert publisher["role"] == "roles/pubsub.publisher" and publisher["member"] == "${local.pubsub_service_agent}"
    subscriber = config().resource("google_pubsub_subscription_iam_member", "agent_source_subscriber")
    assert subscriber["for_each"] == "${local.loops}"
    assert subscriber["subscription"] == "${google_pubsub_subscription.loop[each.key].name}"
    assert subscriber["role"] == "roles/pubsub.subscriber" and subscriber["member"] == "${local.pubsub_service_agent}"
    token = config().resource("google_service_account_iam_member", "agent_push_token_creator")
    assert token["service_account_id"] == '${google_service_account.sa["pubsub_push"].name}'
    assert token["role"] == "roles/iam.serviceAccountTokenCreator"


def _push_request(body: bytes, attributes: dict[str, str]) -> dict[str, Any]:
    """A request body exactly as a Pub/Sub push subscription (wrapped, not no_wrapper) sends it."""
    return {
        "message": {
            "data": base64.b64encode(body).decode(),
            "attributes": attributes,
            "messageId": "1234567890",
            "publishTime": "2024-01-05T21:30:00.123Z",
        },
        "subscription": "projects/my-project-123/subscriptions/goldthread-trades-sub",
        "deliveryAttempt": 3,
    }


@pytest.mark.parametrize("target", ["subscribe_trades", "dead_letter_sink"])
def test_push_delivery_reaches_the_cloud_event_functions(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The push endpoint in pubsub.tf (function URL + /projects/<p>/topics/<t>) gives the function the
    CloudEvent an Eventarc trigger would: functions-framework converts the raw push body and takes the
    topic from the path; an exception answers 500, so Pub/Sub redelivers (and dead-letters at the end)."""
    import functions_framework
    from goldthread import entrypoints
    from goldthread.ports.bus import message_from_event

    # functions-framework records the target and signature in os.environ; keep that inside this test.
    for name in ("FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE"):
        monkeypatch.delenv(name, raising=False)
    topic = "goldthread-dead-letters" if target == "dead_letter_sink" else "goldthread-trades"
    seen: list[Any] = []
    with mock.patch.object(entrypoints, "subscribe", side_effect=seen.append), mock.patch.object(
        entrypoints, "dead_letter_sink", side_effect=seen.append
    ):
        client = functions_framework.create_app(target=target, source=str(MAIN_PY)).test_client()
        attrs = {
            "run_id": "trades-20240105-1a2b3c4d", "loop": "trades", "CloudPubSubDeadLetterSourceDeliveryCount": "10",
        }
        answer = client.post(f"/projects/my-project-123/topics/{topic}", json=_push_request(b'{"doc_id": "p1"}', attrs))
        assert answer.status_code == 200
        assert len(seen) == 1
        message = message_from_event(seen[0])
        assert message.data == b'{"doc_id": "p1"}'
        assert message.attributes == attrs
        assert message.topic == topic
        assert message.message_id == "1234567890"

    with mock.patch.object(entrypoints, "subscribe", side_effect=RuntimeError("transient")), mock.patch.object(
        entrypoints, "dead_letter_sink", side_effect=RuntimeError("transient")
    ):
        client = functions_framework.create_app(target=target, source=str(MAIN_PY)).test_client()
        answer = client.post(f"/projects/my-project-123/topics/{topic}", json=_push_request(b"{}", {}))
        assert answer.status_code == 500, "a raised error must nack the push delivery"


# -- BigQuery -------------------------------------------------------------------------------------


def test_every_table_is_declared_once_from_its_model() -> None:
    tables = config().locals["bigquery_tables"]
    assert set(tables) == {m.__table__ for m in ALL_TABLES}
    for name, spec in tables.items():
        model = TABLES_BY_NAME[name]
        assert spec["partition_field"] == model.__partition__, f"{name}: partition field != __partition__"
        assert spec["clustering"] == list(model.__cluster__), f"{name}: clustering != __cluster__"
        assert spec["description"] == model.__description__, f"{name}: description != __description__"
        assert isinstance(spec["require_partition_filter"], bool)
        if model.__partition__ is None:
            assert spec["require_partition_filter"] is False, f"{name} is not partitioned"


def test_every_table_uses_the_schema_file_generated_from_its_model() -> None:
    table = config().resource("google_bigquery_table", "table")
    assert table["for_each"] == "${local.bigquery_tables}"
    assert table["table_id"] == "${each.key}"
    assert table["schema"] == '${file("${path.module}/schemas/${each.key}.json")}'
    for name in config().locals["bigquery_tables"]:
        path = TF / "schemas" / f"{name}.json"
        assert path.exists(), f"{path} missing: run `goldthread schema generate`"
        assert json.loads(path.read_text()) == bigquery_schema(TABLES_BY_NAME[name]), (
            f"{path} is not what the model generates: run `goldthread schema generate`"
        )
    on_disk = {p.stem for p in (TF / "schemas").glob("*.json")}
    assert on_disk == set(config().locals["bigquery_tables"]), "a schema file without a table (or the reverse)"


def test_tables_are_partitioned_by_day_on_ds_and_clustered() -> None:
    table = config().resource("google_bigquery_table", "table")
    partitioning = dynamic(table, "time_partitioning")
    assert partitioning["for_each"] == "${each.value.partition_field == null ? [] : [each.value.partition_field]}"
    assert one(partitioning["content"]) == {"type": "DAY", "field": "${time_partitioning.value}"}
    assert table["clustering"] == "${each.value.clustering}"
    assert table["require_partition_filter"] == "${each.value.require_partition_filter}"
    assert table["description"] == "${each.value.description}"
    assert table["deletion_protection"] == "${var.deletion_protection}"
    for model in ALL_TABLES:
        assert model.__partition__ in (None, "ds"), f"{model.__table__}: only ds partitions are declared"


VIEW_VARS = {"project": REQUIRED_SAMPLES["project_id"], "dataset": "goldthread"}


def render_view(text: str) -> str:
    """``templatefile`` of a generated view: only ``${project}`` and ``${dataset}``, no directives."""
    assert "%{" not in text and "$${" not in text, "a template directive or escape in a generated view"
    names = set(re.findall(r"\$\{([^}]*)\}", text))
    assert names <= set(VIEW_VARS), f"templatefile would fail on {names - set(VIEW_VARS)}"
    for name, value in VIEW_VARS.items():
        text = text.replace("${" + name + "}", value)
    return text


def test_bi_views_are_the_generated_marts() -> None:
    from goldthread.bi.marts import MART_DESCRIPTIONS, MARTS

    assert config().locals["bi_views"] == (
        '${{for f in fileset("${path.module}/views", "*.sql") : trimsuffix(f, ".sql") => '
        '{file = "${path.module}/views/${f}", description = local.bi_view_descriptions[trimsuffix(f, ".sql")]}}}'
    )
    view = config().resource("google_bigquery_table", "bi_view")
    assert view["for_each"] == "${local.bi_views}"
    assert view["table_id"] == "${each.key}"
    assert view["dataset_id"] == "${google_bigquery_dataset.warehouse.dataset_id}"
    assert view["description"] == "${each.value.description}"
    body = one(view["view"])
    assert body["use_legacy_sql"] is False
    assert body["query"] == (
        "${templatefile(each.value.file, {project = var.project_id, "
        "dataset = google_bigquery_dataset.warehouse.dataset_id})}"
    )
    assert "${google_bigquery_table.table}" in view["depends_on"], "BigQuery checks the tables when a view is made"
    assert "schema" not in view and "time_partitioning" not in view

    # fileset("views", "*.sql"): the files directly in terraform/views/, named after their view.
    on_disk = {p.stem: p for p in (TF / "views").glob("*.sql")}
    assert set(on_disk) == set(MARTS), "a view file without a mart (or the reverse): run `goldthread schema generate`"
    assert config().locals["bi_view_descriptions"] == MART_DESCRIPTIONS
    generated = {p: text for p, text in deployment_artifacts().items() if p.parent == TF / "views"}
    assert set(generated) == set(on_disk.values())
    for path in on_disk.values():
        assert path.read_text() == generated[path], f"{path} is stale: run `goldthread schema generate`"


def test_every_table_a_view_reads_is_a_declared_table() -> None:
    import sqlglot
    from sqlglot import exp

    declared = set(config().locals["bigquery_tables"])
    read = set()
    for path in sorted((TF / "views").glob("*.sql")):
        tree = sqlglot.parse_one(render_view(path.read_text()), read="bigquery")
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            if not table.db and table.name in ctes:
                continue
            where = f"{path.name}: {table.sql(dialect='bigquery')}"
            assert (table.catalog, table.db) == (VIEW_VARS["project"], VIEW_VARS["dataset"]), f"{where} not qualified"
            assert table.name in declared, f"{where} reads a table bigquery.tf does not declare"
            read.add(table.name)
    assert {"fact_trades", "job_runs"} <= read


# -- Cloud Scheduler ------------------------------------------------------------------------------


def test_every_scheduler_job_targets_a_declared_http_function() -> None:
    schedules = config().locals["schedules"]
    job = config().resource("google_cloud_scheduler_job", "job")
    assert job["for_each"] == "${local.schedules}"
    target = one(job["http_target"])
    assert target["uri"] == "${google_cloudfunctions2_function.fn[each.value.function].service_config[0].uri}"
    assert target["http_method"] == "POST"
    assert one(target["oidc_token"])["service_account_email"] == '${google_service_account.sa["scheduler"].email}'
    assert "each.value.loop" in target["body"] and "each.value.ds_offset_days" in target["body"]
    for name, spec in schedules.items():
        assert spec["function"] in functions(), f"job {name} targets undeclared function {spec['function']}"
        assert functions()[spec["function"]]["trigger"] == "http", f"job {name} targets a non-HTTP function"
        assert len(spec["schedule"].split()) == 5, f"job {name}: {spec['schedule']!r} is not a cron line"
        zoneinfo.ZoneInfo(spec["time_zone"])  # raises for an unknown time zone
        assert spec["description"]


def _request(body: dict[str, Any]) -> Any:
    return mock.Mock(get_json=mock.Mock(return_value=body))


def test_dispatch_jobs_cover_every_loop_with_a_day_the_loop_accepts() -> None:
    from goldthread import entrypoints

    schedules = config().locals["schedules"]
    dispatch_jobs = {n: s for n, s in schedules.items() if s["function"] == "dispatch"}
    assert {s["loop"] for s in dispatch_jobs.values()} == {loop.value for loop in Loop}
    for name, spec in schedules.items():
        if spec["function"] != "dispatch":
            assert spec["loop"] is None, f"{name}: only dispatch jobs name a loop"
            continue
        assert Loop(spec["loop"])  # a loop the dispatcher knows
        assert isinstance(spec["ds_offset_days"], int) and spec["ds_offset_days"] <= 0
        body = {"loop": spec["loop"], "ds_offset_days": spec["ds_offset_days"]}
        now = dt.datetime(2024, 1, 10, 0, 30, tzinfo=dt.UTC)
        assert entrypoints.day_from(body, now) == now.date() + dt.timedelta(days=spec["ds_offset_days"])

    settings = Settings()
    # A counterfactual day is ready at the end of the day plus its window; the jobs run just after
    # 00:00 UTC, so the day dispatched must end at least a whole window earlier.
    b = next(s for s in dispatch_jobs.values() if s["loop"] == Loop.REJECTED_SIGNALS.value)
    c = next(s for s in dispatch_jobs.values() if s["loop"] == Loop.EXPIRED_SIGNALS.value)
    assert b["ds_offset_days"] <= -(math.ceil(settings.validity_window / dt.timedelta(days=1)) + 1)
    assert c["ds_offset_days"] <= -(math.ceil(settings.expiry_lookahead / dt.timedelta(days=1)) + 1)
    for spec in (b, c):
        assert spec["time_zone"] == "Etc/UTC", "the offset is counted in UTC days"
    trades = {s["time_zone"]: s for s in dispatch_jobs.values() if s["loop"] == Loop.TRADES.value}
    assert trades["America/New_York"]["ds_offset_days"] == 0, "equities: after the close, the same day"
    assert trades["Etc/UTC"]["ds_offset_days"] == -1, "crypto: after 00:00 UTC, the day that just closed"


def test_patch_jobs_send_what_the_patches_read() -> None:
    schedules = config().locals["schedules"]
    fees = [s for s in schedules.values() if s["function"] == "patch_fees"]
    assert fees and all(s["ds_offset_days"] == -1 for s in fees), "the fee patch runs at T+1"
    assert any(s["function"] == "patch_prices" for s in schedules.values())


# -- IAM ------------------------------------------------------------------------------------------


IAM_KINDS = re.compile(r"_iam_(member|binding|policy)$")


def _iam_resources() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (kind, name, body)
        for kind, named in config().resources.items()
        if IAM_KINDS.search(kind)
        for name, body in named.items()
    ]


def test_nothing_is_public() -> None:
    for kind, name, body in _iam_resources():
        members = [body.get("member", ""), *body.get("members", [])]
        for member in members:
            assert "allUsers" not in member and "allAuthenticatedUsers" not in member, f"{kind}.{name} is public"
    regex = re.search(r'regex\("(.+?)", m\)', one(config().variables["operator_members"]["validation"])["condition"])
    assert regex
    pattern = regex.group(1).replace("\\\\", "\\")
    assert re.match(pattern, "user:alice@example.com")
    assert not re.match(pattern, "allUsers") and not re.match(pattern, "allAuthenticatedUsers")


def test_http_functions_are_invoked_only_by_the_scheduler_and_operators() -> None:
    invokers = {
        name: body
        for kind, name, body in _iam_resources()
        if kind.startswith("google_cloud_run") or kind.startswith("google_cloudfunctions")
    }
    assert set(invokers) == {"scheduler_invoker", "push_invoker", "operator_invoker"}
    assert invokers["scheduler_invoker"]["for_each"] == "${local.scheduled_functions}"
    assert invokers["scheduler_invoker"]["member"] == 'serviceAccount:${google_service_account.sa["scheduler"].email}'
    assert invokers["push_invoker"]["for_each"] == "${local.pushed_functions}"
    assert invokers["push_invoker"]["member"] == 'serviceAccount:${google_service_account.sa["pubsub_push"].email}'
    assert invokers["operator_invoker"]["for_each"] == "${local.operator_grants}"
    assert "local.http_functions" in config().locals["operator_grants"]
    for body in invokers.values():
        assert body["role"] == "roles/run.invoker"
    for local, trigger in (("pushed_functions", "pubsub"), ("http_functions", "http")):
        expected = f'${{toset([for name, f in local.functions : name if f.trigger == "{trigger}"])}}'
        assert config().locals[local] == expected


def test_no_broad_roles() -> None:
    for kind, name, body in _iam_resources():
        role = body.get("role", "")
        assert role not in ("roles/owner", "roles/editor", "roles/viewer"), f"{kind}.{name} grants {role}"
        assert not role.endswith(".admin"), f"{kind}.{name} grants {role}"
        if kind == "google_project_iam_member":
            assert not role.startswith("roles/secretmanager."), "secret access is granted per secret, not project"
            assert not role.startswith("roles/pubsub."), "Pub/Sub is granted per topic or subscription"
            assert not role.startswith("roles/bigquery.data"), "BigQuery data roles are granted on the dataset"
    assert config().locals["runtime_project_roles"] == ["roles/datastore.user", "roles/bigquery.jobUser"]


def test_the_canary_runs_hourly_as_an_account_that_can_do_what_it_does_and_no_more() -> None:
    source = (REPO / "shared" / "goldthread" / "bi" / "canary.py").read_text()
    assert functions()["canary"]["role"] == "canary" and functions()["canary"]["trigger"] == "http"
    job = config().locals["schedules"]["canary"]
    assert job["function"] == "canary"
    minute, *rest = job["schedule"].split()
    assert minute.isdigit() and rest == ["*", "*", "*", "*"], f"the canary runs hourly, not {job['schedule']!r}"

    role = config().locals["runtime_roles"]["canary"]
    # Pub/Sub: ONE work item to the trades topic, never a dispatch, never the dead-letter topic.
    published = set(re.findall(r"\.publish\(ctx\.settings\.topic\(Loop\.(\w+)\)", source))
    assert published == {"TRADES"} and source.count(".publish(") == 1
    assert role["publishes"] == [Loop.TRADES.value]
    # Alpaca: the canary orders are read back from the broker (and the trades loop re-checks the item).
    assert "ctx.broker.get_orders" in source and role["alpaca"] is True
    # Firestore (its run, strategy, signal, position) and BigQuery jobs: the project roles of every runtime role.
    grants = config().locals["runtime_project_grants"]
    assert "for role in keys(local.runtime_roles)" in grants and "local.runtime_project_roles" in grants
    # BigQuery data: upserts of dim_strategy and job_runs (load into a _staging_ table, MERGE, drop it) and
    # reads of fact_trades, dead_letters and the marts; dataEditor on the dataset, as for every runtime role.
    assert "sync_job_runs" in source and "sync_dim_strategy" in source
    editor = config().resource("google_bigquery_dataset_iam_member", "runtime_editor")
    assert editor["for_each"] == "${toset(keys(local.runtime_roles))}"
    assert editor["role"] == "roles/bigquery.dataEditor"
    assert editor["dataset_id"] == "${google_bigquery_dataset.warehouse.dataset_id}"


# -- secrets --------------------------------------------------------------------------------------


def test_no_secret_is_a_plain_variable_default() -> None:
    for name, spec in config().variables.items():
        if any(word in name.lower() for word in SECRET_WORDS):
            assert spec.get("default") is None, f"variable {name} looks like a credential and has a default"
            assert spec.get("sensitive") is True, f"variable {name} looks like a credential and is not sensitive"
    assert "google_secret_manager_secret_version" not in config().resources, "secret values never go through Terraform"
    # The plan looks at the latest versions' metadata only: never their value.
    versions = config().data["google_secret_manager_secret_version"]["alpaca"]
    assert versions["fetch_secret_data"] is False
    assert not re.search(r"(?<!fetch_)secret_data(_wo)?\s*=", config().text), "no secret value in the configuration"


def test_alpaca_keys_come_from_secret_manager_for_the_roles_that_call_alpaca() -> None:
    from goldthread.adapters.alpaca_broker import KEY_ENV, SECRET_ENV

    assert set(config().locals["alpaca_secret_env"]) == {KEY_ENV, SECRET_ENV}
    assert set(config().locals["alpaca_secret_env"].values()) == set(config().locals["alpaca_secrets"])
    secret = config().resource("google_secret_manager_secret", "alpaca")
    assert secret["for_each"] == "${local.alpaca_secrets}"

    fn = config().resource("google_cloudfunctions2_function", "fn")
    mount = dynamic(one(fn["service_config"]), "secret_environment_variables")
    assert mount["for_each"] == "${local.runtime_roles[each.value.role].alpaca ? local.alpaca_secret_env : {}}"
    content = one(mount["content"])
    assert content["secret"] == "${google_secret_manager_secret.alpaca[secret_environment_variables.value].secret_id}"

    accessors = config().resource("google_secret_manager_secret_iam_member", "alpaca")
    assert accessors["for_each"] == "${local.secret_accessors}"
    assert accessors["role"] == "roles/secretmanager.secretAccessor"
    assert config().locals["secret_accessors"].endswith("} if r.alpaca] ...)}"), "accessors only where alpaca = true"
    roles = config().locals["runtime_roles"]
    alpaca_roles = {r for r, spec in roles.items() if spec["alpaca"]}
    assert alpaca_roles == {"dispatcher", "subscriber", "replay", "patcher", "canary"}
    assert roles["dead_letter_sink"]["alpaca"] is False


# -- Firestore ------------------------------------------------------------------------------------


def firestore_index_key(index: dict[str, Any]) -> str:
    """The key ``local.firestore_indexes`` gives an index (the for-expression in firestore.tf)."""
    fields = ",".join(f"{f['fieldPath']}:{f.get('order', f.get('arrayConfig', ''))}" for f in index["fields"])
    return f"{index['collectionGroup']}/{index.get('queryScope', 'COLLECTION')}/{fields}"


def test_firestore_indexes_come_from_firestore_indexes_json() -> None:
    assert config().locals["firestore_indexes_file"] == (
        '${coalesce(var.firestore_indexes_file, "${path.module}/../firestore.indexes.json")}'
    )
    assert config().locals["firestore_indexes"] == (
        '${{for index in jsondecode(file(local.firestore_indexes_file)).indexes : '
        '"${index.collectionGroup}/${lookup(index, "queryScope", "COLLECTION")}/'
        '${join(",", [for f in index.fields : "${f.fieldPath}:${lookup(f, "order", lookup(f, "arrayConfig", ""))}"])}"'
        ' => index}}'
    )
    index = config().resource("google_firestore_index", "composite")
    assert index["for_each"] == "${local.firestore_indexes}"
    assert index["collection"] == "${each.value.collectionGroup}"
    assert index["query_scope"] == '${lookup(each.value, "queryScope", "COLLECTION")}'
    fields = dynamic(index, "fields")
    assert fields["for_each"] == "${each.value.fields}"
    assert one(fields["content"]) == {
        "field_path": "${fields.value.fieldPath}",
        "order": '${lookup(fields.value, "order", null)}',
        "array_config": '${lookup(fields.value, "arrayConfig", null)}',
    }

    # The file Terraform reads is exactly what the code generates from FIRESTORE_INDEXES ...
    path = REPO / "firestore.indexes.json"
    assert path.exists(), "firestore.indexes.json missing: run `goldthread schema generate`"
    assert path.read_text() == deployment_artifacts()[path], f"{path} is stale: run `goldthread schema generate`"
    data = json.loads(path.read_text())
    assert data.get("fieldOverrides", []) == [], "firestore.tf declares the indexes only, not field overrides"
    indexes = data["indexes"]
    assert indexes, "the hot store's queries need composite indexes"

    # ... and every index becomes one google_firestore_index: distinct for_each keys, one per entry.
    keys = [firestore_index_key(entry) for entry in indexes]
    assert len(set(keys)) == len(indexes), f"two entries share a for_each key (duplicate index): {sorted(keys)}"
    for entry in indexes:
        assert entry["collectionGroup"], entry
        assert entry.get("queryScope", "COLLECTION") in ("COLLECTION", "COLLECTION_GROUP"), entry
        assert len(entry["fields"]) >= 2, f"a composite index needs two fields at least: {entry}"
        for field in entry["fields"]:
            assert field["fieldPath"], entry
            assert ("order" in field) != ("arrayConfig" in field), f"order or arrayConfig, one of them: {entry}"
            assert field.get("order", "ASCENDING") in ("ASCENDING", "DESCENDING"), entry
            assert field.get("arrayConfig", "CONTAINS") == "CONTAINS", entry


# -- monitoring -----------------------------------------------------------------------------------


def _run_log_messages() -> set[str]:
    """The ``log.<level>("run ...")`` format strings of goldthread/ledger/runs.py."""
    tree = ast.parse((REPO / "shared" / "goldthread" / "ledger" / "runs.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("debug", "info", "warning", "error", "exception", "critical")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.startswith("run ")
        ):
            out.add(node.args[0].value)
    return out


def test_alert_on_runs_not_succeeded_matches_the_pipeline_log_lines() -> None:
    pattern = config().locals["run_not_succeeded_pattern"]
    metric = config().resource("google_logging_metric", "runs_not_succeeded")
    assert "jsonPayload.message=~\\\"${local.run_not_succeeded_pattern}\\\"" in metric["filter"].replace('"', '\\"')
    assert "severity" not in metric["filter"], "PARTIAL is logged at INFO: a severity filter would miss it"

    messages = _run_log_messages()
    finished = [m for m in messages if m.startswith("run finished %s")]
    assert finished, "runs.py no longer logs 'run finished <STATUS>'"
    classified = {"run started", "run failed: %s", "run stalled: %s", *finished}
    assert messages == classified, f"classify the new run log lines here and in monitoring.tf: {messages - classified}"
    for fmt in finished:
        assert re.match(pattern, fmt % ((RunStatus.PARTIAL.value,) + (0,) * (fmt.count("%") - 1)))
        assert not re.match(pattern, fmt % ((RunStatus.SUCCEEDED.value,) + (0,) * (fmt.count("%") - 1)))
    assert re.match(pattern, "run failed: boom")
    assert re.match(pattern, "run stalled: no heartbeat for 300 s")
    assert not re.match(pattern, "run started")


def test_alert_policies_cover_dead_letters_function_errors_and_runs() -> None:
    policies = config().resources["google_monitoring_alert_policy"]
    assert set(policies) >= {"dead_letter_backlog", "function_errors", "runs_not_succeeded", "canary_broken"}

    backlog = one(one(policies["dead_letter_backlog"]["conditions"])["condition_threshold"])
    assert "pubsub.googleapis.com/subscription/num_undelivered_messages" in backlog["filter"]
    assert "${google_pubsub_subscription.dead_letters_retained.name}" in backlog["filter"]
    assert backlog["comparison"] == "COMPARISON_GT" and backlog["threshold_value"] == 0

    errors = one(one(policies["function_errors"]["conditions"])["condition_threshold"])
    assert "run.googleapis.com/request_count" in errors["filter"] and '"5xx"' in errors["filter"]
    assert 'starts_with(\\"${var.name_prefix}-\\")' in errors["filter"].replace('"', '\\"')

    runs = one(one(policies["runs_not_succeeded"]["conditions"])["condition_threshold"])
    wait_ref = '${time_sleep.log_metrics_visible.triggers["runs_not_succeeded"]}'
    assert f"logging.googleapis.com/user/{wait_ref}" in runs["filter"]
    wait = config().resource("time_sleep", "log_metrics_visible")
    assert wait["triggers"]["runs_not_succeeded"] == "${google_logging_metric.runs_not_succeeded.name}"
    assert runs["comparison"] == "COMPARISON_GT" and runs["threshold_value"] == 0
    for policy in policies.values():
        assert policy["notification_channels"] == "${local.notification_channels}"
        assert one(policy["documentation"])["content"]


# -- the canary's alert: its log-based metric against the log line the canary really writes --------

SEVERITIES = ("DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY")


def cloud_logging_entry(line: str, service_name: str) -> dict[str, Any]:
    """A JSON log line of a 2nd-gen function as Cloud Logging stores it: ``severity`` (and ``time``) lifted
    out of the payload into the entry, everything else in ``jsonPayload``."""
    payload = json.loads(line)
    severity = payload.pop("severity", "DEFAULT")
    payload.pop("time", None)
    return {
        "resource.type": "cloud_run_revision",
        "resource.labels.service_name": service_name,
        "severity": severity,
        "jsonPayload": payload,
    }


def _field(entry: dict[str, Any], name: str) -> Any:
    if name.startswith("jsonPayload."):
        return entry["jsonPayload"].get(name.removeprefix("jsonPayload."))
    return entry.get(name)


def filter_matches(log_filter: str, entry: dict[str, Any]) -> bool:
    """The Logging query language, as far as the metric filters here use it: clauses joined by AND, each
    ``field="value"``, ``field=~"regex"``, ``field:*`` (present) or ``severity>=LEVEL``."""
    assert " OR " not in log_filter and "NOT " not in log_filter, "extend filter_matches for OR / NOT"
    for clause in log_filter.split(" AND "):
        m = re.fullmatch(r'([\w.]+)(=~|>=|=|:)(?:"(.*)"|(\*|[A-Z]+))', clause.strip())
        assert m, f"cannot read filter clause {clause!r}"
        name, op, quoted, bare = m.groups()
        value = _field(entry, name)
        if op == ":":
            assert bare == "*", clause
            ok = value is not None
        elif name == "severity":
            level = bare or quoted
            ok = SEVERITIES.index(value) >= SEVERITIES.index(level) if op == ">=" else value == level
        elif op == "=~":
            ok = value is not None and re.search(quoted.replace('\\"', '"'), str(value)) is not None
        else:
            ok = value == (quoted if quoted is not None else bare)
        if not ok:
            return False
    return True


def test_canary_alert_matches_the_log_line_of_a_broken_hop(ctx: Context) -> None:
    """Break the embedded stack's bus, run the canary, capture the JSON lines it logs (goldthread.logs, the
    formatter the functions use) and check the metric filter selects exactly the broken-hop line."""
    from goldthread.bi.canary import HOPS, run_canary
    from goldthread.logs import JsonFormatter

    from tests.support.faults import bus_stopped

    metric = config().resource("google_logging_metric", "canary_broken")
    fn = config().resource("google_cloudfunctions2_function", "fn")
    assert fn["name"] == '${var.name_prefix}-${replace(each.key, "_", "-")}'
    service = f"{variable_value('name_prefix')}-canary"  # the function's (and Cloud Run service's) name
    log_filter = metric["filter"].replace('${google_cloudfunctions2_function.fn["canary"].name}', service)
    log_filter = log_filter.replace("${local.canary_broken_pattern}", config().locals["canary_broken_pattern"])
    assert "${" not in log_filter, f"unresolved reference in {log_filter}"
    assert "severity" in log_filter and "jsonPayload.hop:*" in log_filter

    logger = logging.getLogger("goldthread")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        whole = run_canary(ctx, timeout=5)
        with bus_stopped(ctx.bus):
            broken = run_canary(ctx, timeout=1)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert whole.ok and broken.broken_hop == "dispatch"

    entries = [cloud_logging_entry(line, service) for line in stream.getvalue().splitlines() if line.strip()]
    matched = [e for e in entries if filter_matches(log_filter, e)]
    assert len(matched) == 1, f"one broken run, one count: {[e['jsonPayload']['message'] for e in matched]}"
    hit = matched[0]
    assert hit["severity"] == "ERROR" and hit["jsonPayload"]["run_id"] == broken.run_id
    # the label the alert groups by: EXTRACT(jsonPayload.hop)
    assert metric["label_extractors"] == {"hop": "EXTRACT(jsonPayload.hop)"}
    assert hit["jsonPayload"]["hop"] == "dispatch" and hit["jsonPayload"]["hop"] in HOPS
    assert one(one(metric["metric_descriptor"])["labels"])["key"] == "hop"
    # the whole run's INFO line, and anything logged on other services, do not count
    whole_lines = [e for e in entries if e["jsonPayload"].get("run_id") == whole.run_id]
    assert whole_lines and not any(filter_matches(log_filter, e) for e in whole_lines)
    assert not filter_matches(log_filter, {**hit, "resource.labels.service_name": f"{service}-other"})
    assert not filter_matches(log_filter, {**hit, "severity": "WARNING"})

    policy = config().resource("google_monitoring_alert_policy", "canary_broken")
    condition = one(one(policy["conditions"])["condition_threshold"])
    wait_ref = '${time_sleep.log_metrics_visible.triggers["canary_broken"]}'
    assert f"logging.googleapis.com/user/{wait_ref}" in condition["filter"]
    assert config().resource("time_sleep", "log_metrics_visible")["triggers"]["canary_broken"] == (
        "${google_logging_metric.canary_broken.name}"
    )
    assert condition["comparison"] == "COMPARISON_GT" and condition["threshold_value"] == 0
    assert one(condition["aggregations"])["group_by_fields"] == ["metric.labels.hop"]

