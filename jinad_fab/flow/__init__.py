"""Flows: the builder, YAML form and remote Pods."""

from .builder import Flow

__all__ = ["Flow"]
