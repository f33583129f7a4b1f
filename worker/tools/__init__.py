"""External tools the worker runs for skills (ripgrep, grep, user commands): how they are run,
rate-limited and protected by circuit breakers."""
