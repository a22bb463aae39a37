"""The key reference of docs/configuration.md, generated from the models so that it cannot drift.

A key is described once, in the docstring under its field (read here from the
source, so that loading a configuration never pays for parsing it); its type and
default come from the field.
``python -m gateway.config.reference`` prints the generated part and
``--write`` replaces it between the markers in docs/configuration.md;
tests/unit/test_config_reference.py fails while the page is stale.
"""
from __future__ import annotations

import argparse
import ast
import functools
import inspect
import json
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from gateway.config.model import GatewayConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
START, END = "<!-- reference:start -->", "<!-- reference:end -->"
COMMAND = "python -m gateway.config.reference --write"

# Annotated types (types.py, browser.py), named by the validator that defines them.
_VALIDATED = {"parse_duration": "duration", "abs_path": "URL path", "_field_name": "field name", "_cookie_name": "cookie name"}
_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "file path", SecretStr: "secret"}
_UNIONS = (Union, types.UnionType)
_BOUNDS = ((Ge, "ge", ">="), (Gt, "gt", ">"), (Le, "le", "<="), (Lt, "lt", "<"))


def _model(tp: Any) -> type[BaseModel] | None:
    return tp if isinstance(tp, type) and get_origin(tp) is None and issubclass(tp, BaseModel) else None


def _nested(tp: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    """The models inside a field's type, with the path suffix that reaches them (``[]``, ``.<name>``)."""
    origin, args = get_origin(tp), get_args(tp)
    if (model := _model(tp)) is not None:
        yield "", model
    elif origin is Annotated:
        yield from _nested(args[0])
    elif origin in _UNIONS:
        for arg in args:
            yield from _nested(arg)
    elif origin is tuple:
        yield from (("[]" + suffix, m) for suffix, m in _nested(args[0]))
    elif origin is dict:
        yield from ((".<name>" + suffix, m) for suffix, m in _nested(args[1]))


@functools.cache
def docstrings(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the string literal right under the field, in ``model`` or the model it extends."""
    found: dict[str, str] = {}
    for cls in reversed(model.__mro__[: model.__mro__.index(BaseModel)]):
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
        assert isinstance(body, ast.ClassDef)
        for field, doc in zip(body.body, body.body[1:], strict=False):
            if isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name) and isinstance(doc, ast.Expr) \
                    and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
                found[field.target.id] = " ".join(doc.value.value.split())
    return found


def walk(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo, str]]:
    """Every key below ``model``, depth first in field order, as (path, field, description)."""
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        yield path, field, field.description or docstrings(model).get(name, "")
        for suffix, sub in _nested(field.annotation):
            yield from walk(sub, path + suffix)


def models(root: type[BaseModel] = GatewayConfig) -> list[type[BaseModel]]:
    """``root`` and every model reachable from its fields."""
    found = [root]
    for model in found:
        for field in model.model_fields.values():
            found.extend(m for _, m in _nested(field.annotation) if m not in found)
    return found


def missing_descriptions(root: type[BaseModel] = GatewayConfig) -> list[str]:
    return [f"{m.__module__}.{m.__qualname__}.{name}" for m in models(root)
            for name, field in m.model_fields.items() if not (field.description or docstrings(m).get(name))]


def _either(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _plural(name: str) -> str:
    return name if "`" in name or " or " in name or name.startswith(("list of ", "map of ")) else name + "s"


def type_name(tp: Any, metadata: tuple[Any, ...] | list[Any] = ()) -> str:
    for item in metadata:
        named = _VALIDATED.get(getattr(getattr(item, "func", None), "__name__", ""))
        if named:
            return named
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return type_name(args[0], args[1:])
    if origin in _UNIONS:
        return _either([type_name(a) for a in args if a is not type(None)])
    if origin is Literal:
        return _either([f"`{a}`" for a in args])
    if origin is tuple:
        return "list of " + _plural(type_name(args[0]))
    if origin is dict:
        return "map of " + _plural(type_name(args[1]))
    if _model(tp) is not None:
        return "mapping"
    return _SCALARS.get(tp, getattr(tp, "__name__", str(tp)))


def _bounds(metadata: list[Any]) -> str:
    """The range a number must fall in: `` (1..100)``, `` (>= 1)``."""
    found = {attr: getattr(m, attr) for m in metadata for kind, attr, _ in _BOUNDS if isinstance(m, kind)}
    if found.keys() == {"ge", "le"}:
        return f" ({found['ge']}..{found['le']})"
    return " (" + ", ".join(f"{sign} {found[attr]}" for _, attr, sign in _BOUNDS if attr in found) + ")" if found else ""


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return "0s" if seconds == 0 else f"{round(seconds * 1000)}ms"


def default(field: FieldInfo, kind: str) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""  # a section: its keys follow
    if value is None:
        return "—"  # absent: the description says what that means
    if kind == "duration":
        return f"`{_duration(value)}`"
    if isinstance(value, (tuple, list, dict, str, bool, int, float)):
        value = list(value) if isinstance(value, tuple) else value
        text = yaml.safe_dump(value, default_flow_style=True, width=1000).removesuffix("\n...\n").strip()
        return "`" + (json.dumps(value) if text.startswith("'") else text) + "`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def row(path: str, field: FieldInfo, description: str) -> str:
    kind = type_name(field.annotation, field.metadata)
    cells = [f"`{path}`", kind + _bounds(field.metadata), default(field, kind), description]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render(root: type[BaseModel] = GatewayConfig) -> str:
    """The generated part: one section per top-level key, each with a table of its keys."""
    out = [f"<!-- generated from the models' field docstrings by `{COMMAND}`: edit those, not this part -->"]
    for name, field in root.model_fields.items():
        out += ["", f"### `{name}`", ""]
        rows = [(name, field, docstrings(root).get(name, ""))]
        rows += [key for suffix, sub in _nested(field.annotation) for key in walk(sub, name + suffix)]
        if _model(field.annotation) is not None:  # a section: its description, then its keys
            out += [_cell(rows.pop(0)[2]), ""]
        out += ["| key | type | default | description |", "|---|---|---|---|", *(row(*key) for key in rows)]
    return "\n".join(out) + "\n"


def current(text: str) -> str:
    """The part of ``text`` between the markers."""
    _, start, rest = text.partition(START + "\n")
    body, end, _ = rest.partition(END)
    if not start or not end:
        raise ValueError(f"{DOC.name}: the markers {START} and {END} are missing")
    return body


def replace(text: str, generated: str) -> str:
    return text.replace(START + "\n" + current(text) + END, START + "\n" + generated + END, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.config.reference", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite the generated part of {DOC.relative_to(DOC.parents[1])}")
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(render())
        return 0
    text = DOC.read_text(encoding="utf-8")
    if (updated := replace(text, render())) != text:
        DOC.write_text(updated, encoding="utf-8")
    print(f"{DOC}: {'updated' if updated != text else 'already current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
