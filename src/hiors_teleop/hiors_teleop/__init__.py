"""Human takeover devices, safe command mux, and episode labelling."""
