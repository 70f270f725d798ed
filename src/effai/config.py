"""YAML config files validated by pydantic, with errors that name the file, line and field.

`load_yaml_model(path, Model)` reads a YAML file (duplicate keys are an error), validates it
with a pydantic model and, on failure, raises one `InputError` per file such as
``search.yaml:7: space.prune_ratio: Input should be a valid number (got 'half')``.
Line numbers come from the YAML composer's node marks: the pydantic error location
(a tuple of keys and list indices) is walked down the node tree to the deepest node found.

>>> import tempfile, os
>>> from pydantic import BaseModel, ConfigDict
>>> class Cfg(BaseModel):
...     model_config = ConfigDict(extra="forbid", frozen=True)
...     name: str
...     epochs: dict = {}
>>> d = tempfile.mkdtemp()
>>> p = os.path.join(d, "c.yaml")
>>> _ = open(p, "w").write("name: a\\nepochs:\\n  n: 1\\nlr: 0.1\\n")
>>> try:
...     load_yaml_model(p, Cfg)
... except InputError as e:
...     print(str(e).replace(p, "c.yaml"))
c.yaml:4: lr: unknown key
>>> _ = open(p, "w").write("name: a\\nname: b\\n")
>>> try:
...     load_yaml_model(p, Cfg)
... except InputError as e:
...     print(str(e).replace(p, "c.yaml"))
c.yaml:2: duplicate key 'name' (first at line 1)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import yaml

from effai.errors import InputError

if TYPE_CHECKING:  # pydantic is imported where a model is validated (import time of the CLI)
    import pydantic

M = TypeVar("M", bound="pydantic.BaseModel")


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last one)."""

    source = "<yaml>"


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)  # resolve `<<` merge keys first, as SafeLoader does
    seen: dict = {}
    for key_node, _ in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):  # `? [a, b]`: a list or mapping as a key
            raise InputError(f"{loader.source}:{line}: a key must be a plain name, not a "
                             f"{'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'}")
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise InputError(f"{loader.source}:{line}: duplicate key {key!r} (first at line {seen[key]})")
        seen[key] = line
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def read_yaml(path: str | os.PathLike) -> tuple[object, yaml.Node | None]:
    """(data, root node) of a YAML file; syntax errors and duplicate keys raise InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte 0x{e.object[e.start]:02x}); save it as UTF-8") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> tuple[object, yaml.Node | None]:
    """(data, root node) of YAML `text`; syntax errors and duplicate keys raise InputError
    naming `source` and the line. Also used for YAML that ships inside the package."""
    loader = None
    try:
        loader = _Loader(text)  # the reader refuses control characters here
        loader.source = source
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        _check_values(data, node, source)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{source}{line}: YAML syntax error: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise InputError(f"{source}: YAML error: {str(e).splitlines()[0]}") from None
    except RecursionError:  # PyYAML composes and constructs recursively
        raise InputError(f"{source}: nested too deeply (more than Python's recursion limit of "
                         f"{sys.getrecursionlimit()} levels); a config is a few levels deep") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, node


_INT64 = 2**63


def _check_values(data, root: yaml.Node | None, source: str, loc: tuple = ()) -> None:
    """Values no config can use, refused with their line: NaN and infinities, integers beyond
    64 bits, and a `seed` outside [0, 2^63 - 1] (torch and numpy refuse it later, in a traceback)."""
    import math

    from effai.limits import check_seed

    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        here = (*loc, k)
        why = None
        if isinstance(v, float) and not math.isfinite(v):
            why = f"{v} is not a usable number"
        elif isinstance(v, int) and not isinstance(v, bool) and not -_INT64 <= v < _INT64:
            why = f"{v} does not fit in 64 bits"
        elif k == "seed" and not isinstance(data, list):
            try:
                check_seed(v, "seed")
            except InputError as e:
                why = str(e).split(": ", 1)[1]
        if why:
            line = node_line(root, here)
            raise InputError(f"{source}{f':{line}' if line else ''}: {'.'.join(map(str, here))}: {why}")
        _check_values(v, root, source, here)


def node_line(root: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the deepest node reached by walking `loc` (keys / indices) from `root`."""
    if root is None:
        return None
    node, line = root, root.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    child, line = v, k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break  # e.g. a missing required field: report the enclosing mapping's line
        node = child
    return line


def load_yaml_model(path: str | os.PathLike, model: type[M]) -> M:
    """Read `path` and validate it as pydantic `model`; errors name file, line and field."""
    import pydantic

    data, root = read_yaml(path)
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        raise InputError(format_errors(path, e, root)) from None


def format_errors(path, err, root: yaml.Node | None) -> str:
    """One line for a pydantic ValidationError: `file:line: field: message (got value)`; several joined by '; '."""
    parts = []
    for item in err.errors(include_url=False):
        loc = tuple(p for p in item["loc"] if isinstance(p, (str, int)))
        # Drop pydantic's internal tags (union member names such as 'list[float]') not present in the YAML.
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = node_line(root, loc)
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        elif item["type"] != "missing":
            got = item.get("input")
            if not isinstance(got, (dict, list)):
                msg += f" (got {got!r})"
        parts.append(f"{path}{f':{line}' if line else ''}: {field}: {msg}")
    return "; ".join(parts[:3]) + (f"; and {len(parts) - 3} more" if len(parts) > 3 else "")
