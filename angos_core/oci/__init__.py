"""Pure OCI helpers: digests, names and references, media types, manifest parsing."""
