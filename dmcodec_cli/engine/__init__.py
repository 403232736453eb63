"""The inference engine: the model's arithmetic in fast, batched, windowed form.

It imports only the model and its modules. ``time_major``: the convolutions as matrix products over
time-major signals [T, C] and the LSTM batched across signals; ``windows``: cutting long inputs into
overlapping pieces and grouping pieces within a budget; ``encoder``: ``BatchEncoder`` (signals -> codes);
``decoder``: ``BatchDecoder`` (codes -> signals); ``plan``: what the engine does on a CPU and on a GPU, as
data; ``device``: moving a batch to the model's device and back; ``allocator``: the glibc allocator policy
that applications may choose (the engine never sets it). The applications (``inference``, ``corpus``) sit
above it.
"""
