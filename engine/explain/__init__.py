"""Explanations: proof trees, why-not and remedies, built from an evaluation's results."""
