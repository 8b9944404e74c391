"""What a lane record (push.dispatch.<priority>) holds: one DispatchBatch, or a DispatchBundle of small ones.

Fan-out's Bundler fills bundles up to these limits, and dispatch sizes its PyFlink bundles by them.
"""
LANE_RECORD_BATCHES = 16  # the most batches a DispatchBundle carries
# A bundle is full at this many bytes: with one more small batch (< half a batch of the longest ids) it
# stays below Kafka's 1 MiB record limit.
LANE_RECORD_BYTES = 512 * 1024
