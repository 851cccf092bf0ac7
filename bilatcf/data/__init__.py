"""Data layer: synthetic bilateral mammograms, manifests, pairing, splits, paired transforms and DataModules."""
