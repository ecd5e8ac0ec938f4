"""The detection service: transport-free predictor, gRPC server and the client SDK.

Importing ``service`` (and ``service.client``) never imports torch; the server side loads it lazily.
"""
