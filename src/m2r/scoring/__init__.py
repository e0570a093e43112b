"""Quality scoring of reasoning traces and difficulty scoring by rollouts."""
