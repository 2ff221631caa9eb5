"""What a cycle tells the world: rendered plans, events to sinks, metrics, notifications,
artifacts."""
