"""Hi-ORS bringup: launch files, parameters, RViz config and the pip-only runner."""
