"""What a submission brings besides JSON: raw bytes (multipart, Protobuf), files, images."""
