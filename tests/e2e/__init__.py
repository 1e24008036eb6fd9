"""End-to-end tests against real ``privflow serve`` processes."""
