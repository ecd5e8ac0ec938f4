"""Labelling with Label Studio: projects, chip tasks, pre-annotations, ML backend, COCO export.

Never imports torch at import time; see labeling/README.md for the workflow.
"""
