"""products_service's live event stream (common.streams)."""
