"""The service layer: validate, check access, reserve budget, run or submit work.

Actions are plain synchronous functions over a ``ServiceContext``; routers call them (in a
worker thread) and turn their results into HTTP responses. They raise ``ApiError``.
"""
