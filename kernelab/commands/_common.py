"""What every command shares: the built-in defaults and JSON output."""

from __future__ import annotations

import json

DEFAULT_DEVICE = "H100-SXM"
DEFAULT_MODEL = "Llama-2-7B"


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))
