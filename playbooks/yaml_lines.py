"""Where in a YAML file a field is: the line of a field path, for errors that name file, line and field.

Shared by the plan's loader (playbooks.plan) and the drill scenario's (playbooks.drill.scenario).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import yaml

# the keys by which a list item is named in a path such as `types[gas_accident]` or `escalation_chains.x[2]`
ITEM_KEYS = ("id", "kind", "step", "name")


def line_of(root: yaml.Node | None, loc: Iterable[str | int | tuple[str]]) -> int | None:
    """Follow a field path down the composed YAML. A segment that is no key (a missing field, a dict key's
    `[key]` marker) is skipped, so the line is the deepest node that exists. A one-tuple `(value,)` is a
    list item named by its id (or kind, step, name)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for seg in loc:
        if isinstance(node, yaml.MappingNode):
            wanted = seg[0] if isinstance(seg, tuple) else seg
            for k, v in node.value:
                if str(k.value) == str(wanted):
                    node, line = v, k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode):
            if isinstance(seg, int) and 0 <= seg < len(node.value):
                node = node.value[seg]
                line = node.start_mark.line + 1
            elif isinstance(seg, tuple):
                for item in node.value:
                    if isinstance(item, yaml.MappingNode) and any(
                            str(k.value) in ITEM_KEYS and isinstance(v, yaml.ScalarNode) and str(v.value) == seg[0]
                            for k, v in item.value):
                        node, line = item, item.start_mark.line + 1
                        break
    return line


_SEGMENT = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")


def parse_path(path: str) -> list[str | int | tuple[str]]:
    """`types[gas_accident].lead_units` or `fallback_chain.0.unit` as segments for line_of."""
    out: list[str | int | tuple[str]] = []
    for name, key in _SEGMENT.findall(path):
        if key:
            out.append((key,))
        elif name.isdigit():
            out.append(int(name))
        else:
            out.append(name)
    return out
