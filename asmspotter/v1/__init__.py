"""Generated gRPC code of the asmspotter.v1 API (from protos/, see protos/generate.py)."""
