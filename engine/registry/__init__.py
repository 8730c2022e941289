"""Registry access: references and the OCI distribution API client."""
