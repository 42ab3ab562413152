"""The HTTP API: one router per feature, mounted by ``wahub.app.create_app``.

Routers call the feature services on ``app.state.hub`` and shape their results with
``serializers``; every error leaves through ``errors`` in one body shape.
"""
