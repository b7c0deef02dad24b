"""The VNUML scenario language: model, parser, checks, serializer."""
