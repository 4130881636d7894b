"""The interfaces: the FastAPI application, its routes and schemas, and the `scrapflow` CLI."""
