"""Built-in targets: ops that act on the world (docs/targets.md)."""
