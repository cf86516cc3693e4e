"""GPU discovery and assignment (being written)."""

from __future__ import annotations

from typing import Any


async def plan_from_config(specs: Any, conf: Any) -> dict[str, list[dict[str, str]]]:
    """Per model, each worker's environment; empty until GPU support lands."""
    return {}
