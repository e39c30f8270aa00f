"""The reply room: showing a streamed reply on a platform.

The reply-surface port an adapter implements (``surface``), the streamer that coalesces chunks
and edits messages in place (``streamer``), fence-safe splitting (``splitting``) and pacing per
destination (``pacing``).
"""
