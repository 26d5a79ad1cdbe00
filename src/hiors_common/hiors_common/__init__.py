"""Shared helpers: local-only ROS environment, node entry/shutdown, parameters, diagnostics, checkpoint signing."""
