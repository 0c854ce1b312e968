"""The version of hiervq: one source, read by the package, pyproject.toml and every saved model's config.json."""

__version__ = "0.2.0"
