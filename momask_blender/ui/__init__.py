"""What the user sees and presses: panel, properties, preferences, operators."""
