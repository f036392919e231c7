"""The processes modelyard runs as: ``serve`` (all in one), and the pieces they are assembled from."""
