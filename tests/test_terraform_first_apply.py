"""What a first ``terraform apply`` on an empty project needs, checked statically (issue 17).

Google makes several things usable only some time after the API call that creates them: an IAM grant,
a log-based metric, a service agent. Each test here names one of those and checks that whatever needs
it waits for it in the dependency graph (``depends_on`` or a reference), so the first apply does not
stop halfway. Also: the builder's least privilege, and a source bucket lifecycle that cannot delete the
archive the functions are built from.
"""

from __future__ import annotations

import re
from typing import Any

from tests.test_terraform import REPO, config, one

DEPLOY_MD = REPO / "docs" / "deploy.md"


def _depends_on(body: dict[str, Any]) -> set[str]:
    return {d.strip("${}") for d in body.get("depends_on", [])}


def _grants_to(accounts: set[str]) -> set[str]:
    """Every IAM resource (``kind.name``) whose member is one of these service accounts of ``sa``."""
    found = set()
    for kind, named in config().resources.items():
        if not re.search(r"_iam_member$", kind):
            continue
        for name, body in named.items():
            member = body.get("member", "")
            m = re.search(r'google_service_account\.sa\[(?:"(\w+)"|each\.value(?:\.account)?)\]', member)
            if not m:
                continue
            who = {m.group(1)} if m.group(1) else _for_each_accounts(body)
            if who & accounts:
                found.add(f"{kind}.{name}")
    return found


def _for_each_accounts(body: dict[str, Any]) -> set[str]:
    """The accounts a ``for_each`` grant iterates over (every runtime role, for the locals used here)."""
    assert body["for_each"] in (
        "${local.runtime_project_grants}", "${local.topic_publishers}", "${local.secret_accessors}",
        "${toset(keys(local.runtime_roles))}",
    ), body["for_each"]
    return set(config().locals["runtime_roles"])


# -- IAM grants take effect before the first build, instance start and push -----------------------


def test_functions_wait_for_the_builder_and_runtime_grants() -> None:
    runtime = set(config().locals["runtime_roles"])
    grants = _grants_to(runtime | {"builder"})
    assert {
        "google_project_iam_member.builder", "google_storage_bucket_iam_member.builder_source",
        "google_artifact_registry_repository_iam_member.builder_images", "google_project_iam_member.runtime",
        "google_bigquery_dataset_iam_member.runtime_editor", "google_pubsub_topic_iam_member.publisher",
        "google_secret_manager_secret_iam_member.alpaca",
    } <= grants
    wait = config().resource("time_sleep", "runtime_grants")
    assert _depends_on(wait) == grants, "every grant of the builder and runtime accounts, and nothing else"
    assert int(wait["create_duration"].rstrip("s")) >= 60
    fn = config().resource("google_cloudfunctions2_function", "fn")
    assert "time_sleep.runtime_grants" in _depends_on(fn)


def test_pushes_and_schedules_wait_for_the_invoker_grants() -> None:
    wait = config().resource("time_sleep", "invoker_grants")
    assert _depends_on(wait) == {
        "google_cloud_run_v2_service_iam_member.scheduler_invoker",
        "google_cloud_run_v2_service_iam_member.push_invoker",
        "google_service_account_iam_member.agent_push_token_creator",
    }
    for kind, name in (
        ("google_pubsub_subscription", "loop"), ("google_pubsub_subscription", "dead_letter_sink"),
        ("google_cloud_scheduler_job", "job"),
    ):
        assert "time_sleep.invoker_grants" in _depends_on(config().resource(kind, name)), f"{kind}.{name}"


def test_pubsub_agent_exists_before_it_is_granted_anything() -> None:
    identity = config().resource("google_project_service_identity", "pubsub")
    assert "google_project_service.api" in _depends_on(identity)
    assert config().locals["pubsub_service_agent"] == "${google_project_service_identity.pubsub.member}"
    agent_grants = [
        (kind, name) for kind, named in config().resources.items() for name, body in named.items()
        if body.get("member") == "${local.pubsub_service_agent}"
    ]
    assert len(agent_grants) == 3
    assert "@gcp-sa-pubsub.iam.gserviceaccount.com\"" not in config().text, "never a hand-built agent address"


# -- log-based alerts wait for their metrics ------------------------------------------------------


def test_log_based_alerts_wait_for_their_metrics() -> None:
    wait = config().resource("time_sleep", "log_metrics_visible")
    metrics = config().resources["google_logging_metric"]
    assert wait["triggers"] == {name: f"${{google_logging_metric.{name}.name}}" for name in metrics}
    assert int(wait["create_duration"].rstrip("s")) >= 180
    for name in metrics:
        policy = config().resource("google_monitoring_alert_policy", name)
        condition = one(one(policy["conditions"])["condition_threshold"])
        assert f'time_sleep.log_metrics_visible.triggers["{name}"]' in condition["filter"]
        assert f"google_logging_metric.{name}" not in condition["filter"], "read through the wait, never directly"


# -- secrets: the two steps are enforced ----------------------------------------------------------


def test_functions_are_refused_until_the_alpaca_secrets_have_a_version() -> None:
    fn = config().resource("google_cloudfunctions2_function", "fn")
    assert "terraform_data.alpaca_versions" in _depends_on(fn)
    gate = config().resource("terraform_data", "alpaca_versions")
    lifecycle = one(gate["lifecycle"])
    pre = one(lifecycle["precondition"])
    assert pre["condition"] == "${var.alpaca_versions_added}"
    message = pre["error_message"]
    assert "-target=google_secret_manager_secret.alpaca" in message and "gcloud secrets versions add" in message
    assert "alpaca_versions_added=true" in message
    assert one(lifecycle["postcondition"])["condition"] == (
        "${alltrue([for v in data.google_secret_manager_secret_version.alpaca : v.enabled])}"
    )
    versions = config().data["google_secret_manager_secret_version"]["alpaca"]
    assert versions["for_each"] == "${var.alpaca_versions_added ? local.alpaca_secrets : {}}"
    assert versions["fetch_secret_data"] is False, "the plan must never hold a key"
    assert config().variables["alpaca_versions_added"]["default"] is False


def test_first_deploy_steps_in_the_docs_match_the_gate() -> None:
    docs = DEPLOY_MD.read_text()
    step = (
        "terraform apply -parallelism=1 -target=google_secret_manager_secret.alpaca"
        " -target=google_firestore_index.composite"
    )
    assert step in docs
    assert step in one(one(config().resource("terraform_data", "alpaca_versions")["lifecycle"])["precondition"])[
        "error_message"
    ]
    assert "-var alpaca_versions_added=true" in docs
    assert "-parallelism=1" in (REPO / "terraform" / "firestore.tf").read_text()


# -- least privilege for the builder --------------------------------------------------------------


def test_the_builder_reads_the_source_pushes_its_images_and_writes_logs_only() -> None:
    grants = {}
    for key in _grants_to({"builder"}):
        kind, name = key.split(".")
        grants[key] = config().resource(kind, name)
    assert {k: g["role"] for k, g in grants.items()} == {
        "google_project_iam_member.builder": "roles/logging.logWriter",
        "google_storage_bucket_iam_member.builder_source": "roles/storage.objectViewer",
        "google_artifact_registry_repository_iam_member.builder_images": "roles/artifactregistry.writer",
    }
    assert grants["google_storage_bucket_iam_member.builder_source"]["bucket"] == "${google_storage_bucket.source.name}"
    images = grants["google_artifact_registry_repository_iam_member.builder_images"]
    assert images["repository"] == "${google_artifact_registry_repository.functions.name}"
    build = one(config().resource("google_cloudfunctions2_function", "fn")["build_config"])
    assert build["docker_repository"] == "${google_artifact_registry_repository.functions.id}"
    assert config().resource("google_artifact_registry_repository", "functions")["format"] == "DOCKER"
    assert '"roles/cloudbuild.builds.builder"' not in config().text


# -- the source bucket never loses the live archive -----------------------------------------------


def test_lifecycle_rules_delete_only_noncurrent_archives() -> None:
    bucket = config().resource("google_storage_bucket", "source")
    assert one(bucket["versioning"])["enabled"] is True, "a replaced archive must survive as a noncurrent version"
    rules = bucket["lifecycle_rule"]
    assert rules
    for rule in rules:
        if one(rule["action"])["type"] != "Delete":
            continue
        condition = one(rule["condition"])
        # A live object is never ARCHIVED (noncurrent): only a replaced archive can match.
        assert condition.get("with_state") == "ARCHIVED", f"a Delete rule may match the live archive: {condition}"
        assert "age" not in condition and "created_before" not in condition
        assert condition["days_since_noncurrent_time"] >= 30
    obj = config().resource("google_storage_bucket_object", "source")
    assert obj["bucket"] == "${google_storage_bucket.source.name}"


def test_docs_no_longer_describe_the_fixed_dataset_gap() -> None:
    docs = DEPLOY_MD.read_text()
    assert "Known gap" not in docs
    source = (REPO / "shared" / "goldthread" / "adapters" / "bigquery_warehouse.py").read_text()
    assert "self._client.get_dataset(ds.reference" in source, "ensure_tables looks the dataset up before creating"


# -- the waits add no cycle -----------------------------------------------------------------------


def _graph() -> dict[str, set[str]]:
    """Resource-level dependency graph (what ``terraform graph`` builds): resources, data sources and
    locals, with an edge to everything a body refers to or names in ``depends_on``."""
    from tests.support.tf_schema import references

    nodes: dict[str, Any] = {f"local.{k}": v for k, v in config().locals.items()}
    nodes |= {f"{kind}.{name}": body for kind, named in config().resources.items() for name, body in named.items()}
    nodes |= {
        f"data.{kind}.{name}": body for kind, named in config().data.items() for name, body in named.items()
    }
    graph: dict[str, set[str]] = {}
    for node, body in nodes.items():
        edges = {f"{'data.' if is_data else ''}{kind}.{name}" for is_data, kind, name, _ in references(body)}
        edges |= {f"local.{m}" for m in re.findall(r"\blocal\.(\w+)", repr(body))}
        if isinstance(body, dict):
            edges |= _depends_on(body)
        graph[node] = {e for e in edges if e in nodes and e != node}
    return graph


def test_the_dependency_graph_has_no_cycle() -> None:
    graph = _graph()
    assert "time_sleep.runtime_grants" in graph["google_cloudfunctions2_function.fn"]
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        assert state.get(node) != 1, "dependency cycle: " + " -> ".join([*path, node])
        state[node] = 1
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        visit(node, [])
