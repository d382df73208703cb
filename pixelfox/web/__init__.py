"""Browser-facing blueprints."""
