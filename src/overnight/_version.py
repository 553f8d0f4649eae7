"""The version of overnight, for the CLI, the dashboard and the package metadata."""

__version__ = "0.1.0"
