"""Importers that turn raw public reference data into the compact tables shipped in kb/tables."""
