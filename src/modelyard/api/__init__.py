"""App assembly: the one endpoint table, dispatch derived from it, the door (keys and scopes), the admin and
operations services, the OpenAPI document, and the one mapping of concept errors to client errors."""
