"""The ASGI layers around the routes, outermost first as ``service.app`` stacks them.

``context`` (request id, access log, HTTP metrics, the 500 answer), ``auth`` (API keys, 401),
``limits`` (body size and type, time, in-flight work: 413, 415, 408, 503), and ``protocol`` (the
bounded httptools protocol ``xent serve`` runs under uvicorn: request-head size and time).
"""
