"""The JSON schemas of facesketch, shipped with the package (see pyproject.toml)."""
