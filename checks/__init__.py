"""deliverck's own checks, one module per failure cause (imported as deliverck.checks)."""
