"""``terraform/`` checked against the providers' own schemas, offline.

Each provider's schema comes from its cdktf prebuilt package (``cdktf-cdktf-provider-<name>``, pinned in
requirements-dev.txt), generated from the provider release that ``providers.tf`` names as its lower bound
(tests/support/tf_schema.py). Every resource and data source type, argument, nested block (static or
dynamic), required argument and attribute reference of ``terraform/*.tf`` must exist in that release:
what ``terraform validate`` would say, without downloading a provider. A fixture with one wrong argument,
one missing required argument and one wrong reference proves the check catches each kind.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.support import tf_schema

REPO = Path(__file__).resolve().parents[1]
TF = REPO / "terraform"

# provider local name in providers.tf -> the cdktf package holding its schema
PACKAGES = {
    "google": "cdktf-cdktf-provider-google",
    "google-beta": "cdktf-cdktf-provider-google-beta",
    "time": "cdktf-cdktf-provider-time",
    "archive": "cdktf-cdktf-provider-archive",
}


def parse(text: str) -> dict[str, Any]:
    """One .tf file as python-hcl2 gives it (the same options tests/test_terraform.py uses)."""
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    return hcl2.loads(text, serialization_options=options)


@functools.cache
def configuration() -> dict[str, dict[str, Any]]:
    """terraform/*.tf, parsed, by file name."""
    return {path.name: parse(path.read_text()) for path in sorted(TF.glob("*.tf"))}


def required_providers() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for parsed in configuration().values():
        for block in parsed.get("terraform", []):
            for providers in block.get("required_providers", []):
                found.update(providers)
    return found


def schema_for(kind: str, body: dict[str, Any]) -> tf_schema.Provider | None:
    """The provider schema a resource or data source is checked against (its ``provider`` argument, else the
    provider its type prefix names), or None for one built into Terraform."""
    if kind in tf_schema.BUILTIN_RESOURCES:
        return None
    local = body.get("provider", "").strip("${}") or kind.split("_")[0]
    return tf_schema.provider(PACKAGES[local])


def check(files: dict[str, dict[str, Any]]) -> list[str]:
    """Every problem the providers' schemas find in a parsed configuration."""
    problems: list[str] = []
    declared: dict[tuple[bool, str], dict[str, Any]] = {}
    for parsed in files.values():
        for is_data, section in ((False, "resource"), (True, "data")):
            for block in parsed.get(section, []):
                for kind, named in block.items():
                    for name, body in named.items():
                        declared[(is_data, f"{kind}.{name}")] = body
                        where = f"{'data.' if is_data else ''}{kind}.{name}"
                        if kind in tf_schema.BUILTIN_RESOURCES and not is_data:
                            spec = tf_schema.BUILTIN_RESOURCES[kind]
                            block_schema = tf_schema.Block(arguments=dict(spec["arguments"]))
                            problems += tf_schema.check_body(body, block_schema, where)
                            continue
                        provider = schema_for(kind, body)
                        assert provider is not None
                        types = provider.data_sources if is_data else provider.resources
                        if kind not in types:
                            problems.append(f"{where}: provider {provider.name} {provider.version} has no such type")
                            continue
                        problems += tf_schema.check_body(body, types[kind][0], where)
        for block in parsed.get("provider", []):
            for local, body in block.items():
                problems += tf_schema.check_body(body, tf_schema.provider(PACKAGES[local]).config, f"provider {local}")

    for parsed in files.values():
        for section in ("resource", "data", "output", "locals", "module"):
            for ref_is_data, kind, name, path in tf_schema.references(parsed.get(section, [])):
                where = f"reference {'data.' if ref_is_data else ''}{kind}.{name}{''.join('.' + p for p in path)}"
                body = declared.get((ref_is_data, f"{kind}.{name}"))
                if body is None:
                    problems.append(f"{where}: not declared")
                    continue
                if kind in tf_schema.BUILTIN_RESOURCES and not ref_is_data:
                    attrs = tf_schema.Attributes({a: None for a in tf_schema.BUILTIN_RESOURCES[kind]["attributes"]})
                else:
                    provider = schema_for(kind, body)
                    assert provider is not None
                    types = provider.data_sources if ref_is_data else provider.resources
                    if kind not in types:
                        continue  # reported above
                    attrs = types[kind][1]
                problems += tf_schema.check_reference(attrs, path, where)
    return sorted(set(problems))


# -- the pinned releases --------------------------------------------------------------------------


@pytest.mark.parametrize("local", sorted(PACKAGES))
def test_schema_package_is_the_release_providers_tf_pins(local: str) -> None:
    """The schema checked against is the lower bound of the version constraint (older releases may lack
    what the configuration uses; newer ones within the major version only add)."""
    spec = required_providers()[local]
    provider = tf_schema.provider(PACKAGES[local])
    assert spec["source"] == f"hashicorp/{provider.name}"
    lower = re.match(r">=\s*(\d+\.\d+\.\d+)\s*,\s*<\s*(\d+)\.", spec["version"])
    assert lower, f"{local}: version {spec['version']!r} is not '>= X.Y.Z, < N.0.0'"
    assert lower.group(1) == provider.version, (
        f"providers.tf says {local} >= {lower.group(1)} but {PACKAGES[local]} holds the schema of "
        f"{provider.version}: pin the package generated from {lower.group(1)} (or raise the bound)"
    )
    assert int(lower.group(2)) == int(provider.version.split(".")[0]) + 1, "stay within one major version"


def test_every_provider_used_is_required() -> None:
    required = set(required_providers())
    assert required == set(PACKAGES), f"providers.tf requires {required}; the schema test knows {set(PACKAGES)}"


# -- the configuration ----------------------------------------------------------------------------


def test_configuration_matches_the_provider_schemas() -> None:
    problems = check(configuration())
    assert not problems, "terraform/ does not match the providers' schemas:\n" + "\n".join(problems)


def test_every_resource_type_is_checked() -> None:
    """No type slips through unchecked: every one is in a provider schema or built into Terraform."""
    kinds = set()
    for parsed in configuration().values():
        for section in ("resource", "data"):
            for block in parsed.get(section, []):
                for kind, named in block.items():
                    for body in named.values():
                        kinds.add(kind)
                        provider = schema_for(kind, body)
                        if provider is None:
                            assert kind in tf_schema.BUILTIN_RESOURCES and section == "resource"
                        else:
                            assert kind in (provider.data_sources if section == "data" else provider.resources)
    assert {"google_cloudfunctions2_function", "google_project_service_identity", "time_sleep"} <= kinds


def test_beta_only_resources_name_the_beta_provider() -> None:
    """A type the GA provider lacks must say ``provider = google-beta`` (or init would fail)."""
    ga = tf_schema.provider(PACKAGES["google"])
    for parsed in configuration().values():
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    if kind.startswith("google_") and kind not in ga.resources:
                        beta = body.get("provider", "").strip("${}") == "google-beta"
                        assert beta, f"{kind}.{name} needs provider = google-beta"


# -- the check itself catches mistakes ------------------------------------------------------------

BROKEN = """
resource "google_pubsub_topic" "t" {
  name             = "t"
  retention_period = "86400s"
}

resource "google_pubsub_subscription" "s" {
  name = "s"

  retry_policy {
    minimum_backoff = "10s"
  }
}

resource "google_storage_bucket" "b" {
  name     = "b"
  location = "US"

  lifecycle_rule {
    condition {
      age = 1
    }
  }
}

resource "time_sleep" "w" {
  create_duration = "1s"
  depends_on      = [google_pubsub_topic.t]
}

output "o" {
  value = [google_pubsub_topic.t.url, google_storage_bucket.b.url, google_pubsub_subscription.missing.id]
}
"""


def test_the_check_catches_a_wrong_argument_a_missing_required_one_and_a_wrong_reference() -> None:
    assert check({"broken.tf": parse(BROKEN)}) == sorted(
        [
            # google_pubsub_topic has message_retention_duration, not retention_period
            "google_pubsub_topic.t: unsupported argument 'retention_period'",
            # a subscription needs its topic
            "google_pubsub_subscription.s: missing required argument 'topic'",
            # a lifecycle rule needs its action block
            "google_storage_bucket.b.lifecycle_rule: missing required block 'action'",
            # a topic exports no url (a bucket does)
            "reference google_pubsub_topic.t.url: no attribute 'url'",
            "reference google_pubsub_subscription.missing.id: not declared",
        ]
    )


def test_the_check_follows_dynamic_and_nested_blocks() -> None:
    text = """
resource "google_cloudfunctions2_function" "f" {
  name     = "f"
  location = "us-central1"

  service_config {
    dynamic "secret_environment_variables" {
      for_each = {}
      content {
        key        = "K"
        project_id = "p"
        secret     = "s"
        versoin    = "latest"
      }
    }
  }
}

output "o" {
  value = google_cloudfunctions2_function.f.service_config[0].urix
}
"""
    where = "google_cloudfunctions2_function.f.service_config.secret_environment_variables"
    assert check({"f.tf": parse(text)}) == [
        f"{where}: missing required argument 'version'",
        f"{where}: unsupported argument 'versoin'",
        "reference google_cloudfunctions2_function.f.service_config.urix: no attribute 'service_config.urix'",
    ]
