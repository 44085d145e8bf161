"""TS^3, the test-time variant of S^3, as we reconstruct it (see README, "TS^3").

Modules: ``select`` (view entropy and confidence selection), ``adapt`` (the per-class shift of the
class spaces, batched over images, its training-free variant and the baselines), ``views`` (seeded
TPT views and their resumable encoding into the feature cache).
"""
