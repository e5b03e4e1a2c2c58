"""The run configuration: its schema, YAML loading and overrides, where each key belongs."""
