"""promptregistry: versioned prompt templates, aliases, rendering and a cached SDK."""
