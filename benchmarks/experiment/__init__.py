"""What gets run: the run configuration, cells and their identities, presets, the dry run."""
