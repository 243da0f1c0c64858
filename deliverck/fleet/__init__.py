"""The fleet front ends' engines: many targets in one run.

audit (a config file of targets, ignores, state for --changes-only), configfile
(that file, read through deliverck.options), bulk (a stream of targets, one JSON
line each), dask (bulk on a Dask cluster) and output (where results are written).
They sit above the runner and the report layer and below the CLI; rendering lives
in deliverck.report (report/fleet.py), not here.
"""
