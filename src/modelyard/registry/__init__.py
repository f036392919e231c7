"""Model artifacts and (in later work) the registry of versions, aliases and provenance."""
