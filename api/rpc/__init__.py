"""The gRPC front door (`autoglm grpc`): the service of schemas/autoglm/v1/service.proto over the
same services as the HTTP API (submitter, task store, authenticator, error table)."""
