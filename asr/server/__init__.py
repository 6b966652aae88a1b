"""`asr serve`: OpenAI's audio transcription API over HTTP, on FastAPI and uvicorn.

Only `asr.server.app` and `asr.server.run` import FastAPI, uvicorn and python-multipart (the
`serve` extra); neither `import asr` nor any other command imports this package, so they do not
pay for a web framework they do not use.

    config.py     the server's settings and their limits
    protocol.py   OpenAI's request fields, response documents and error shape (no web framework)
    upload.py     the multipart upload, read as it arrives into an anonymous spool file
    admission.py  how many requests may be in the server at once, and when to come back
    app.py        the FastAPI application: routes, the API key, decoding off the event loop
    run.py        load the model once, bind the socket, run uvicorn
"""
