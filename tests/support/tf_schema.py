"""Terraform provider schemas read offline from the cdktf prebuilt provider packages, and a checker.

The PyPI packages ``cdktf-cdktf-provider-<name>`` are generated from a provider's own schema (``terraform
providers schema -json``) and ship it as a jsii assembly: one ``<Type>Config`` struct per resource and data
source lists every argument (``optional`` unset = required) and nested block, and the resource's class lists
every attribute it exports (for references). This module turns that assembly back into Terraform's names and
checks a parsed configuration against it: resource types, arguments, blocks (static and dynamic), required
arguments, and every ``type.name.attr[...]`` reference. No Terraform, no provider download, no network.

Each package pins one provider release (its docs links say which, e.g. ``hashicorp/google/6.50.0``), so
``requirements-dev.txt`` pins the package whose release is the lower bound ``providers.tf`` declares.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import re
import tarfile
from dataclasses import dataclass, field
from typing import Any

# Terraform's meta-arguments, valid in every resource / data block whatever the provider.
META_ARGUMENTS = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection", "dynamic"}

# Built into Terraform itself (no provider package): terraform_data's arguments and attributes.
BUILTIN_RESOURCES = {
    "terraform_data": {
        "arguments": {"input": False, "triggers_replace": False},
        "attributes": {"id", "input", "output"},
    },
}

_LINK = re.compile(
    r"registry\.terraform\.io/providers/hashicorp/([\w-]+)/(\d+\.\d+\.\d+)/docs(?:/(resources|data-sources)/\S+ (\w+))?"
)
_ANCHOR = re.compile(r"#(\w+) \w+#\1\}")


@dataclass
class Block:
    """One schema level: arguments (name -> required) and nested blocks (name -> Block, required)."""

    arguments: dict[str, bool] = field(default_factory=dict)
    blocks: dict[str, tuple[Block, bool]] = field(default_factory=dict)


@dataclass
class Attributes:
    """What a reference may read: name -> nested Attributes of a block or object attribute, or None."""

    names: dict[str, Attributes | None] = field(default_factory=dict)


@dataclass
class Provider:
    """One provider release: its name, version, and the schema of its configuration, resources and data sources."""

    name: str
    version: str
    config: Block
    resources: dict[str, tuple[Block, Attributes]]
    data_sources: dict[str, tuple[Block, Attributes]]


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _docs(entry: dict[str, Any]) -> str:
    docs = entry.get("docs", {})
    return f"{docs.get('summary', '')} {docs.get('remarks', '')}"


def read_assembly(distribution: str) -> dict[str, Any]:
    """The jsii assembly (``package/.jsii`` in the ``*.jsii.tgz``) of an installed cdktf provider package."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError(
            f"{distribution} is not installed: `pip install -r requirements-dev.txt` (make test does it)"
        ) from exc
    tgz = next((f for f in dist.files or [] if str(f).endswith(".jsii.tgz")), None)
    if tgz is None:
        raise RuntimeError(f"{distribution} has no .jsii.tgz assembly")
    with tarfile.open(str(dist.locate_file(tgz))) as tar:
        member = tar.extractfile("package/.jsii")
        assert member is not None
        assembly = json.loads(member.read())
        if assembly.get("schema") == "jsii/file-redirect":  # newer jsii: the real assembly, compressed
            import gzip

            inner = tar.extractfile(f"package/{assembly['filename']}")
            assert inner is not None
            raw = inner.read()
            assembly = json.loads(gzip.decompress(raw) if assembly.get("compression") == "gzip" else raw)
    return assembly


class _Reader:
    def __init__(self, types: dict[str, Any]) -> None:
        self.types = types

    def block(self, fqn: str, seen: frozenset[str] = frozenset()) -> Block:
        out = Block()
        for prop in self.types[fqn].get("properties", []):
            anchor = _ANCHOR.search(_docs(prop))
            name = anchor.group(1) if anchor else _snake(prop["name"])
            required = not prop.get("optional", False)
            nested = self._struct(prop["type"])
            if nested and nested not in seen:
                out.blocks[name] = (self.block(nested, seen | {fqn}), required)
            else:
                out.arguments[name] = required
        return out

    def _struct(self, typ: dict[str, Any]) -> str | None:
        """The struct a property holds (a nested block, single or list), or None for a plain attribute."""
        if "fqn" in typ:
            return typ["fqn"] if self.types.get(typ["fqn"], {}).get("datatype") else None
        if "collection" in typ:
            return self._struct(typ["collection"]["elementtype"])
        if "union" in typ:
            for option in typ["union"]["types"]:
                found = self._struct(option)
                if found:
                    return found
        return None

    def attributes(self, fqn: str, depth: int = 0) -> Attributes:
        out = Attributes()
        entry = self.types[fqn]
        if entry.get("base") == "cdktf.ComplexList":  # a list of blocks: what get(i) returns
            getter = next(m for m in entry.get("methods", []) if m["name"] == "get")
            return self.attributes(getter["returns"]["type"]["fqn"], depth)
        names = {p["name"] for p in entry.get("properties", []) if not p.get("static")}
        for prop in entry.get("properties", []):
            if prop.get("static") or (prop["name"].endswith("Input") and prop["name"][:-5] in names):
                continue
            name = _snake(prop["name"])
            name = name[: -len("_attribute")] if name.endswith("_attribute") else name  # cdktf renames clashes
            target = prop["type"].get("fqn", "")
            nested_kind = self.types.get(target, {}).get("base")
            nested = nested_kind in ("cdktf.ComplexObject", "cdktf.ComplexList") and depth < 12
            out.names[name] = self.attributes(target, depth + 1) if nested else None
        return out


@functools.cache
def provider(distribution: str) -> Provider:
    """The schema of the provider release a cdktf package was generated from."""
    types = read_assembly(distribution)["types"]
    reader = _Reader(types)
    resources: dict[str, tuple[Block, Attributes]] = {}
    data_sources: dict[str, tuple[Block, Attributes]] = {}
    config = Block()
    name = version = ""
    for fqn, entry in types.items():
        base = entry.get("base")
        if base not in ("cdktf.TerraformResource", "cdktf.TerraformDataSource", "cdktf.TerraformProvider"):
            continue
        link = _LINK.search(entry["docs"]["summary"])
        assert link, f"{fqn}: no registry link in its docs"
        name, version = link.group(1), link.group(2)
        config_fqn = entry["initializer"]["parameters"][-1]["type"]["fqn"]
        if base == "cdktf.TerraformProvider":
            config = reader.block(config_fqn)
            continue
        schema = (reader.block(config_fqn), reader.attributes(fqn))
        (resources if base == "cdktf.TerraformResource" else data_sources)[link.group(4)] = schema
    return Provider(name, version, config, resources, data_sources)


# -- checking a configuration --------------------------------------------------------------------


def _blocks(value: Any) -> list[dict[str, Any]]:
    """A nested block's bodies as python-hcl2 gives them (a list of dicts, or one dict)."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    return []


def check_body(body: dict[str, Any], schema: Block, where: str, top: bool = True) -> list[str]:
    """Every argument and block of ``body`` exists in ``schema``, and every required one is set
    (``top``: the body of a resource itself, where Terraform's meta-arguments are allowed too)."""
    problems = []
    present = set()
    for key, value in body.items():
        if key in ("dynamic",):
            for dyn in _blocks(value):
                for name, spec in dyn.items():
                    present.add(name)
                    if name not in schema.blocks:
                        problems.append(f"{where}: dynamic {name!r} is not a block of this resource")
                        continue
                    for content in _blocks(spec.get("content", [])):
                        problems += check_body(content, schema.blocks[name][0], f"{where}.{name}", top=False)
            continue
        if key in META_ARGUMENTS and top:
            continue
        present.add(key)
        if key in schema.arguments:
            continue
        if key in schema.blocks:
            for nested in _blocks(value):
                problems += check_body(nested, schema.blocks[key][0], f"{where}.{key}", top=False)
            continue
        problems.append(f"{where}: unsupported argument {key!r}")
    for name, required in schema.arguments.items():
        if required and name not in present:
            problems.append(f"{where}: missing required argument {name!r}")
    for name, (_, required) in schema.blocks.items():
        if required and name not in present:
            problems.append(f"{where}: missing required block {name!r}")
    return problems


_REFERENCE = re.compile(
    r"(?<![\w.])(data\.)?((?:google|time|archive)_\w+|terraform_data)\.(\w+)((?:\[[^\]]*\])?)((?:\.\w+(?:\[\d+\])?)*)"
)


def dynamic_iterators(value: Any) -> set[str]:
    """The names of every ``dynamic "<name>"`` block: ``<name>.value`` inside it is its iterator, no resource."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, v in value.items():
            if key == "dynamic":
                found |= {name for block in _blocks(v) for name in block}
            found |= dynamic_iterators(v)
    elif isinstance(value, list):
        for v in value:
            found |= dynamic_iterators(v)
    return found


def references(value: Any) -> list[tuple[bool, str, str, list[str]]]:
    """Every ``[data.]type.name[key].attr[0].attr`` in the expressions of a parsed body (dynamic block
    iterators, ``<block>.value`` and ``<block>.key``, excluded)."""
    iterators = dynamic_iterators(value)
    return [ref for ref in _references(value) if ref[0] or ref[1] not in iterators]


def _references(value: Any) -> list[tuple[bool, str, str, list[str]]]:
    found = []
    if isinstance(value, dict):
        for v in value.values():
            found += _references(v)
    elif isinstance(value, list):
        for v in value:
            found += _references(v)
    elif isinstance(value, str) and "${" in value:
        for m in _REFERENCE.finditer(value):
            path = [re.sub(r"\[\d+\]$", "", part) for part in m.group(5).split(".") if part]
            found.append((bool(m.group(1)), m.group(2), m.group(3), path))
    return found


def check_reference(attributes: Attributes, path: list[str], where: str) -> list[str]:
    """Each step of an attribute path exists in the exported attributes."""
    level: Attributes | None = attributes
    for i, step in enumerate(path):
        if level is None:
            return [f"{where}: {'.'.join(path[:i])} has no attribute {step!r}"]
        if step not in level.names:
            return [f"{where}: no attribute {'.'.join(path[: i + 1])!r}"]
        level = level.names[step]
    return []
