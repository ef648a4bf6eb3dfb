"""Documentation of every config key, generated from schemas/config.schema.yaml so it cannot drift
from what the validator accepts. `python -m facesketch.config_docs > schemas/README.md` writes it;
a test checks that the committed file is what this renders."""

from __future__ import annotations

import json
import sys

from facesketch.config import schema

HEADER = """# Configuration keys

Generated from `config.schema.yaml` by `python -m facesketch.config_docs > schemas/README.md`;
do not edit by hand (a test compares the two). `config.yaml` is the full reproduction;
`src/facesketch/configs/demo.yaml` overlays it for the CPU demo. Unknown keys are errors.
"""


def _type(node: dict) -> str:
    if "enum" in node:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "$ref" in node:
        return f"see [{node['$ref'].rsplit('/', 1)[-1]}](#{node['$ref'].rsplit('/', 1)[-1]})"
    t = node.get("type")
    if isinstance(t, list):
        return " or ".join(t)
    if t:
        return t
    for key in ("oneOf", "anyOf"):
        if key in node:
            return " or ".join(_type(n) for n in node[key])
    return "any"


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _rows(node: dict, path: str, out: list[str]) -> None:
    for name, child in (node.get("properties") or {}).items():
        key = f"{path}.{name}" if path else name
        default = f"`{json.dumps(child['default'])}`" if "default" in child else ""
        out.append(f"| `{key}` | {_type(child)} | {default} | {_one_line(child.get('description'))} |")
        _rows(child, key, out)
        extra = child.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            out.append(f"| `{key}.<name>` | {_type(extra)} | | any name: {_one_line(extra.get('description'))} |")
            _rows(extra, f"{key}.<name>", out)
        for alt in child.get("oneOf", []) + child.get("anyOf", []):
            if isinstance(alt, dict) and alt.get("properties"):
                _rows(alt, key, out)


def render(sch: dict | None = None) -> str:
    sch = sch or schema()
    lines = [HEADER, _one_line(sch.get("description")), "", "| key | type | default | meaning |",
             "|---|---|---|---|"]
    _rows(sch, "", lines)
    for name, node in (sch.get("$defs") or {}).items():
        lines += ["", f"## {name}", "", _one_line(node.get("description")), "",
                  "| key | type | default | meaning |", "|---|---|---|---|"]
        _rows(node, "", lines)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
