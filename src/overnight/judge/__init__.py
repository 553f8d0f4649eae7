"""The keep policy: when a change is kept."""
