"""The plugin contract: hook specifications, the specs plugins register, the plugin manager and registry, record helpers, ftcore's own plugin."""
