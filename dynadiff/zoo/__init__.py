"""Domain-adaptive model zoo of one-step experts."""
