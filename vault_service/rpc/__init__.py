"""Thin gRPC adapter: authentication and error-mapping interceptor, servicer, server assembly."""
