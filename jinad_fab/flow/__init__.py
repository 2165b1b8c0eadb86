"""Flows: the builder, YAML form, plotting and remote Pods."""

from .builder import Flow

__all__ = ["Flow"]
