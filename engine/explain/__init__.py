"""Explanations built from an evaluation's results: proof trees, `because` sentences and citations, why-not, remedies."""
