"""The dashboard at `/ui`: static pages served by the API, reading the same `/v1` endpoints.

Nothing is built at run time: the pages are plain ES modules and CSS under `static/`, and the one
chart library (uPlot, MIT) is vendored from npm as a minified file under `static/vendor/`.
"""
