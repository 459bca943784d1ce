"""The lenses, one package each: built on a scan, they reach the model only through the adapter."""
