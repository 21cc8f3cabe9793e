"""The connector's description: manifest.yaml and schemas/ loaded, checked and frozen; field errors."""
