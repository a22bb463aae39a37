"""Reading a file: YAML (duplicate keys refused), ``${ENV}`` interpolation, relative paths, every problem with its location.

A problem names the file and line (from the YAML node marks, read again only when there are
problems), the key, the bad value (never of a key that may hold a secret) and what is expected;
an unknown key gets the closest known one (``upstreem``: did you mean ``upstream``?).
"""
from __future__ import annotations

import difflib
import os
import re
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gateway.config.model import GatewayConfig
from gateway.config.networks import CONTEXT as NETWORKS
from gateway.config.sources import resolve_source_paths
from gateway.config.types import ConfigError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


Loc = tuple[int | str, ...]
Problem = tuple[Loc, str]
# keys whose values are never echoed in a problem
_SECRET = re.compile(r"secret|password|private|credential|token|key|dsn|url", re.I)


def interpolate(node: Any, where: Loc, problems: list[Problem]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string, so secrets stay in the environment."""
    if isinstance(node, dict):
        return {k: interpolate(v, (*where, k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, (*where, i), problems) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                problems.append((where, f"environment variable {name} is not set (or write ${{{name}:-default}})"))
                return ""
            return default
        return value

    return _ENV.sub(substitute, node)


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _location(loc: Loc) -> str:
    out = ""
    for part in loc:
        out = f"{out}[{part}]" if isinstance(part, int) else _join(out, part)
    return out


_EXPECTED = {
    "tuple_type": "must be a list, e.g. [a, b] (a single value too: [a])",
    "list_type": "must be a list, e.g. [a, b] (a single value too: [a])",
    "dict_type": "must be a mapping of keys to values",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a text value",
}


def _message(error: ErrorDetails) -> str:
    loc = tuple(p for p in error["loc"] if isinstance(p, (int, str)))
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _keys_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6) if loc else []
        if close:
            return f"unknown key; did you mean {close[0]!r}?"
        return "unknown key" + (f" (expected one of: {', '.join(sorted(known))})" if known else " (check its spelling)")
    if kind == "missing":
        return "required"
    msg = _EXPECTED.get(kind) or str(error["msg"]).removeprefix("Value error, ")
    return msg + _echo(loc, error.get("input"))


def _echo(loc: Loc, value: Any) -> str:
    """`` (got ...)`` for a scalar of a key that cannot hold a secret."""
    if isinstance(value, (dict, list, tuple)) or value is None:
        return ""
    if any(isinstance(p, str) and _SECRET.search(p) for p in loc):
        return ""
    text = repr(value)
    return f" (got {text[:77] + '...' if len(text) > 80 else text})"


def _model_of(annotation: Any) -> Any:
    """The model, sequence or mapping type inside Optional/Annotated/Union wrappers (the first that is one)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _model_of(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return annotation if origin in (tuple, list, dict) else None


def _keys_at(loc: Loc) -> list[str]:
    """The keys the model at ``loc`` takes (best effort: [] where the path cannot be followed)."""
    current: Any = GatewayConfig
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part)) if isinstance(part, str) else None
            if field is None:
                return []
            current = _model_of(field.annotation)
        elif get_origin(current) in (tuple, list):
            current = _model_of(get_args(current)[0])
        elif get_origin(current) is dict:
            current = _model_of(get_args(current)[1])
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _lines(text: str) -> Any:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None


def _line_of(root: Any, loc: Loc) -> int | None:
    """The line of the deepest node of ``loc`` that the document has (its key's line)."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# libyaml's parser when PyYAML was built with it: 3x faster on a 10,000-route file.
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_BASE_LOADER):  # type: ignore[misc]
    """A safe loader that refuses duplicate keys: YAML parsers keep the last one silently,
    so ``auth: required`` followed by ``auth: none`` would give a public route."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.start_mark.line + 1})", key_node.start_mark
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]


_YAML_LOADER = _UniqueKeyLoader


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, turning I/O and syntax errors into ConfigError."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        hint = ""
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        if mark is not None and mark.line < len(lines) and "${" in lines[mark.line]:
            hint = "; a ${VAR:-default} inside [ ] or { } must be quoted: '${VAR:-default}'"
        raise ConfigError([f"{where}: invalid YAML ({getattr(exc, 'problem', exc)}){hint}"]) from None


def parse_config(raw: Any, base_dir: Path, origin: Path | None = None) -> GatewayConfig:
    """Validate a parsed YAML document; relative paths are relative to ``base_dir``; problems name the line of
    ``origin`` (the file ``raw`` was read from) where it has one."""
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): the file must be a YAML mapping"])
    problems: list[Problem] = []
    raw = interpolate(raw, (), problems)
    for i, route in enumerate(raw.get("routes") or []):
        if isinstance(route, dict) and not route.get("name"):
            route["name"] = f"routes[{i}]"
    if isinstance(raw.get("users_file"), str):
        raw["users_file"] = str(base_dir / raw["users_file"])
    resolve_source_paths(raw, base_dir)
    _resolve_key_files(raw, base_dir)
    _resolve_oidc_files(raw, base_dir)
    if isinstance(raw.get("admin"), dict) and isinstance(raw["admin"].get("keys_file"), str):
        raw["admin"]["keys_file"] = str(base_dir / raw["admin"]["keys_file"])  # relative to the config file
    _resolve_audit_file(raw, base_dir)
    try:
        defined = raw.get("networks")  # routes check the names they use where they are written
        config = GatewayConfig.model_validate(raw, context={NETWORKS: defined if isinstance(defined, dict) else {}})
    except ValidationError as exc:
        unset = {loc for loc, _ in problems}  # one problem for one unset variable, not a second for its empty value
        problems += [(loc, _message(e)) for e in exc.errors()
                     if (loc := tuple(p for p in e["loc"] if isinstance(p, (int, str)))) not in unset]
    if problems:
        raise ConfigError(_located(problems, origin))
    return config


def _located(problems: list[Problem], origin: Path | None) -> list[str]:
    root = _lines(origin.read_text(encoding="utf-8", errors="replace")) if origin is not None else None
    located = []
    for loc, message in problems:
        line = _line_of(root, loc) if root is not None and loc else None
        where = f"{origin}:{line}: " if line is not None else ""
        located.append((line or 0, f"{where}{_location(loc)}: {message}" if loc else f"{where}{message}"))
    return [text for _, text in sorted(located, key=lambda item: item[0])]  # in the file's order


def _resolve_key_files(raw: dict[str, Any], base_dir: Path) -> None:
    """Key files, like the users file, are relative to the configuration file."""
    tokens = raw.get("tokens")
    keys = tokens.get("keys") if isinstance(tokens, dict) else None
    for spec in keys if isinstance(keys, list) else []:
        if not isinstance(spec, dict):
            continue
        for name in ("secret_file", "private_key_file", "public_key_file"):
            if isinstance(spec.get(name), str):
                spec[name] = str(base_dir / spec[name])


def _resolve_oidc_files(raw: dict[str, Any], base_dir: Path) -> None:
    """The providers' secret and key files, like the users file, are relative to the configuration file."""
    oidc = raw.get("oidc")
    providers = oidc.get("providers") if isinstance(oidc, dict) else None
    for spec in providers.values() if isinstance(providers, dict) else []:
        for name in ("client_secret_file", "private_key_file"):
            if isinstance(spec, dict) and isinstance(spec.get(name), str):
                spec[name] = str(base_dir / spec[name])


def _resolve_audit_file(raw: dict[str, Any], base_dir: Path) -> None:
    """The audit file sink's path, like the users file, is relative to the configuration file."""
    audit = raw.get("audit")
    if isinstance(audit, dict) and isinstance(audit.get("path"), str):
        audit["path"] = str(base_dir / audit["path"])


def load_config(path: str | Path) -> GatewayConfig:
    path = Path(path)
    return parse_config(read_yaml(path), path.resolve().parent, path)
