"""Developer tools behind the ``tiny-listener`` commands: the route table (``routes``), one
event run through an app (``trigger``), restart on code changes (``run --reload``) and
structured event logs (``run --log-format json``)."""
