"""How a setting is declared: a dataclass field that carries its description and constraints.

Shared by the config schema (:mod:`edge_runtime.config`) and the detector
backends, whose typed options are sections of that schema.
"""

from dataclasses import field


def setting(default, doc: str, *, choices: tuple | None = None, minimum: float | None = None,
            maximum: float | None = None):
    """A schema field: default value, description and constraints."""
    return field(default=default, metadata={"doc": doc, "choices": choices, "min": minimum, "max": maximum})
