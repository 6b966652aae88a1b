"""Importers that map other toolkits' pretrained weights into `asr` models."""
