"""The REST surface: typed dependencies (deps.py) and one router per resource (routes/)."""
