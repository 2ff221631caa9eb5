"""Test-only helpers shared by test folders (fault-injecting proxy, ...)."""
