"""Hi-ORS online rejection sampling trainer and checkpoint publisher."""
