"""ollabot: the platform-free conversation engine."""
