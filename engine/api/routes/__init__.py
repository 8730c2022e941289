"""The Docker Engine API routes, one module per resource: each turns a request into a job."""
