"""Configs shipped with the package: demo.yaml, the embedded default run."""
