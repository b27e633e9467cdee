"""Regenerate schemas/scenario.schema.json from the pydantic models of `topology.schema`.

    python schemas/make_schemas.py

(`tests/io/test_schemas.py` fails while the shipped file and the models disagree.)
`results.schema.json` is written by hand: it documents `dataplane`'s JSON output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from topology.schema import scenario_json_schema  # noqa: E402


def scenario_schema_text() -> str:
    """The scenario schema exactly as the shipped file holds it."""
    return json.dumps(scenario_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    (HERE / "scenario.schema.json").write_text(scenario_schema_text())
    print(f"wrote {HERE / 'scenario.schema.json'}")
