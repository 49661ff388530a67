"""Server-Sent Events streams of each service's outbox (see README, "Live events").

- tokens: the short-lived stream token a browser's EventSource opens a stream with;
- events: outbox rows as stream events, their filter, the SSE wire format;
- feed: one poller per process and outbox, fanning batches out to its clients;
- service: opening a stream (auth, filters, resume point) and the bytes it sends;
- router: the stream-token route and what the services' stream routes share.
"""
