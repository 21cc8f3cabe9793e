"""The HTTP surface platforms call: routes derived from the manifest, authentication, request bodies."""
