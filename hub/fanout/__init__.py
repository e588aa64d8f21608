"""Fan-out: subscriptions and their deliveries (Kafka out.<name>, webhooks, the health-book sync)."""
