"""Developer tools behind the ``tiny-listener`` commands: the route table (``routes``), one
event run through an app (``trigger``), restart on code changes (``run --reload``), structured
event logs (``run --log-format json``) and the app's AsyncAPI and OpenAPI documents
(``asyncapi``, ``openapi``)."""
