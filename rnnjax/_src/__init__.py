"""Private helpers shared by rnnjax's modules, in one place (not part of the public API)."""
