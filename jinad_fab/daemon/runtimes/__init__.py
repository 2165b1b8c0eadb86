"""Runtimes: how a workspace is built and its objects run (`process`, `docker`); see base.py."""
