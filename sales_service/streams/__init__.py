"""sales_service's live event stream (common.streams), with today's running figures."""
