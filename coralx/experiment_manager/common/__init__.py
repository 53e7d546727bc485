"""The seed's ``common`` package: YAML serialisation and config generation."""
