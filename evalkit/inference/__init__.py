"""Batched inference over a crash-safe cache."""
